"""SSH access: the deploy user, its one sudo rule, and sshd hardened.

Setup (guarded, see guard.py):
- the deploy user `onebox`, which logs in with the keys the setup's login user has;
- its sudo rule: /usr/local/sbin/onebox-agent and nothing else (no password, no shell);
- sshd's algorithms from ssh-audit's hardening guide for the Debian release: strong key
  exchanges, ciphers and MACs, ed25519 and 4096-bit RSA host keys, no Diffie-Hellman
  moduli under 3072 bits.

Then, over a new connection as the deploy user (which proves that login works), the
`confirm` action locks the door: root login and password login off. That change is
guarded too, and kept once one more new connection confirms it.
"""

from __future__ import annotations

import pwd
import re
from pathlib import Path

from . import guard
from .paths import ENTRY
from .plan import Change, command, file_change
from .protocol import AgentError
from .system import ensure_dir, run, user_exists, write_file

DEPLOY_USER = "onebox"
ENTRY_SOURCE = Path(__file__).with_name("entry_script.py")
SUDOERS = Path("/etc/sudoers.d/onebox")
HARDENING = Path("/etc/ssh/sshd_config.d/00-onebox.conf")  # sshd: the first value wins
LOCKDOWN = Path("/etc/ssh/sshd_config.d/01-onebox-lockdown.conf")
MODULI = Path("/etc/ssh/moduli")
MODULI_ORIGINAL = Path("/etc/ssh/moduli.onebox-original")
RSA_HOST_KEY = Path("/etc/ssh/ssh_host_rsa_key")

SUDOERS_TEXT = f"""\
# Written by `onebox setup`: onebox's deploy user may run onebox's agent as root, and
# nothing else. The agent administers the server (packages, units, the database), so
# this key is as strong as root's through it: keep it like a root key.
{DEPLOY_USER} ALL=(root) NOPASSWD: {ENTRY}
"""
SUDOERS_ALL_TEXT = f"""\
# Written by `onebox setup`, as [security] deploy_sudo = "all" in onebox.toml asks:
# onebox's deploy user may run anything as root, without a password.
{DEPLOY_USER} ALL=(ALL:ALL) NOPASSWD: ALL
"""


def sudoers_text(deploy_sudo: str) -> str:
    return SUDOERS_ALL_TEXT if deploy_sudo == "all" else SUDOERS_TEXT


HOST_KEYS = "HostKey /etc/ssh/ssh_host_ed25519_key\nHostKey /etc/ssh/ssh_host_rsa_key\n"
CIPHERS = (
    "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes256-ctr,aes192-ctr,"
    "aes128-gcm@openssh.com,aes128-ctr"
)
HOST_KEY_ALGORITHMS = (
    "ssh-ed25519,ssh-ed25519-cert-v01@openssh.com,sk-ssh-ed25519@openssh.com,"
    "sk-ssh-ed25519-cert-v01@openssh.com,rsa-sha2-512,rsa-sha2-512-cert-v01@openssh.com,"
    "rsa-sha2-256,rsa-sha2-256-cert-v01@openssh.com"
)
# Per Debian release (OpenSSH 9.2 in 12, 10.0 in 13), as ssh-audit's policies expect.
KEX = {
    "12": "sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com,curve25519-sha256,"
    "curve25519-sha256@libssh.org,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,"
    "diffie-hellman-group-exchange-sha256",
    "13": "mlkem768x25519-sha256,sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com",
}
MACS = {
    "12": "hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,umac-128-etm@openssh.com",
    "13": "hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com,umac-128-etm@openssh.com",
}

LOCKDOWN_TEXT = """\
# Written by `onebox setup` once the deploy user had logged in: keys only, no root.
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitEmptyPasswords no
AuthenticationMethods publickey
X11Forwarding no
AllowAgentForwarding no
AllowTcpForwarding no
Compression no
LoginGraceTime 30
LogLevel VERBOSE
TCPKeepAlive no
ClientAliveInterval 300
ClientAliveCountMax 2
"""


def hardening_text(debian: str) -> str:
    return (
        f"# Written by `onebox setup`: sshd per ssh-audit's hardening guide for Debian {debian}.\n"
        '# [security] skip = { ssh = "why" } in onebox.toml leaves sshd alone.\n'
        + HOST_KEYS
        + f"KexAlgorithms {supported('kex', KEX[debian])}\n"
        + f"Ciphers {supported('cipher', CIPHERS)}\n"
        + f"MACs {supported('mac', MACS[debian])}\n"
        + f"HostKeyAlgorithms {supported('HostKeyAlgorithms', HOST_KEY_ALGORITHMS)}\n"
        + "RequiredRSASize 3072\n"
    )


def supported(kind: str, wanted: str) -> str:
    """Those of `wanted` this OpenSSH knows (a Debian 12 not updated for a while lacks
    the newest names; sshd would refuse its configuration over one)."""
    known = set(run(["ssh", "-Q", kind], check=False).stdout.split())
    return ",".join(name for name in wanted.split(",") if not known or name in known)


# --------------------------------------------------------------------------- setup


def ensure(login: str, debian: str, deploy_sudo: str = "agent") -> tuple[bool, bool]:
    """The deploy user and its sudo rule, then sshd's algorithms (guarded).
    (changed, guard armed)"""
    changed = ensure_deploy_user(login)
    changed |= ensure_sudoers(sudoers_text(deploy_sudo))  # the entry: the "onebox agent" step
    hardened, armed = ensure_sshd_config(HARDENING, hardening_text(debian), "ssh", moduli=True)
    return changed or hardened, armed


def plan(login: str, debian: str, deploy_sudo: str = "agent") -> list[Change]:
    changes = (
        [] if user_exists(DEPLOY_USER) else [Change("user", DEPLOY_USER, "keys only, no password")]
    )
    if user_exists(DEPLOY_USER):
        home = Path(pwd.getpwnam(DEPLOY_USER).pw_dir)
        have = _keys(home / ".ssh" / "authorized_keys")
        theirs = _keys(Path(pwd.getpwnam(login).pw_dir) / ".ssh" / "authorized_keys")
        added = [key for key in theirs if key not in have]
        if added:
            changes.append(
                Change("file", str(home / ".ssh/authorized_keys"), f"{len(added)} key(s) added")
            )
    changes += file_change(SUDOERS, sudoers_text(deploy_sudo))
    changes += file_change(HARDENING, hardening_text(debian))
    if _weak_moduli():
        changes.append(Change("file", str(MODULI), "weak Diffie-Hellman groups removed"))
    if _rsa_bits() < 4096:
        changes.append(Change("file", "/etc/ssh/ssh_host_rsa_key", "a new 4096-bit host key"))
    if changes:
        changes.append(command(["systemctl", "reload", "ssh"]))
    return changes


def ensure_deploy_user(login: str) -> bool:
    changed = False
    if not user_exists(DEPLOY_USER):
        run(
            [
                "useradd",
                "--create-home",
                "--shell",
                "/bin/bash",
                "--user-group",
                "--comment",
                "onebox deploy user",
                DEPLOY_USER,
            ],
            what="creating the deploy user",
        )
        run(["usermod", "--password", "*", DEPLOY_USER])  # no password: keys only, not locked
        changed = True
    home = Path(pwd.getpwnam(DEPLOY_USER).pw_dir)
    keys_file = home / ".ssh" / "authorized_keys"
    have = _keys(keys_file)
    theirs = _keys(Path(pwd.getpwnam(login).pw_dir) / ".ssh" / "authorized_keys")
    if not have and not theirs:
        raise AgentError(
            f"{login!r} has no ~/.ssh/authorized_keys to give the deploy user",
            hint="onebox logs in with keys only: add yours to the server (ssh-copy-id), or "
            'keep SSH as it is with [security] skip = { ssh = "the reason" }',
        )
    wanted = have + [key for key in theirs if key not in have]
    ensure_dir(home / ".ssh", mode=0o700, owner=DEPLOY_USER, group=DEPLOY_USER)
    changed |= write_file(
        keys_file, "\n".join(wanted) + "\n", mode=0o600, owner=DEPLOY_USER, group=DEPLOY_USER
    )
    return changed


def _keys(path: Path) -> list[str]:
    if not path.is_file():
        return []
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def ensure_sudoers(text: str) -> bool:
    if SUDOERS.is_file() and SUDOERS.read_text() == text:
        return False
    candidate = SUDOERS.with_name(".onebox.new")  # sudo skips names with a dot
    write_file(candidate, text, mode=0o440)
    checked = run(["visudo", "-c", "-q", "-f", str(candidate)], check=False)
    if checked.returncode != 0:
        candidate.unlink(missing_ok=True)
        raise AgentError("the sudo rule for the deploy user does not check", output=checked.stderr)
    candidate.replace(SUDOERS)
    return True


# --------------------------------------------------------------------------- sshd


def ensure_sshd_config(path: Path, text: str, name: str, moduli: bool = False) -> tuple[bool, bool]:
    """Write one of onebox's sshd drop-ins, test the whole configuration (`sshd -t`), and
    reload sshd with a guard armed. Open sessions stay; new ones get the new settings."""
    previous = path.read_text() if path.is_file() else None
    needs_moduli = moduli and _weak_moduli()
    needs_key = moduli and _rsa_bits() < 4096
    if previous == text and not needs_moduli and not needs_key:
        return False, False
    guard.arm(name, undo_script(path, previous, restore_moduli=moduli))
    try:
        if needs_key:
            _new_rsa_host_key()
        if needs_moduli:
            _strong_moduli()
        write_file(path, text, mode=0o644)
        tested = run(["sshd", "-t"], check=False)
        if tested.returncode != 0:
            raise AgentError("sshd rejects the new configuration", output=tested.stderr)
        run(["systemctl", "reload", "ssh"], what="reloading sshd")
    except BaseException:
        guard.disarm(name)
        run(["/bin/sh", "-c", undo_script(path, previous, restore_moduli=moduli)], check=False)
        raise
    return True, True


def undo_script(path: Path, previous: str | None, restore_moduli: bool) -> str:
    lines = []
    if previous is None:
        lines.append(f"rm -f {path}")
    else:
        lines.append(f"cat > {path} <<'ONEBOX_SSHD'\n{previous}ONEBOX_SSHD")
    if restore_moduli:
        lines.append(f"[ -f {MODULI_ORIGINAL} ] && cp {MODULI_ORIGINAL} {MODULI}")
    lines.append("systemctl reload ssh")
    return "\n".join(lines) + "\n"


def _weak_moduli() -> bool:
    if not MODULI.is_file():
        return False
    for line in MODULI.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 7 and not line.startswith("#") and int(fields[4]) < 3071:
            return True
    return False


def _strong_moduli() -> None:
    """Only Diffie-Hellman groups of 3072 bits and more (the original is kept aside)."""
    text = MODULI.read_text()
    if not MODULI_ORIGINAL.exists():
        write_file(MODULI_ORIGINAL, text, mode=0o644)
    kept = [
        line
        for line in text.splitlines()
        if line.startswith("#") or len(line.split()) < 7 or int(line.split()[4]) >= 3071
    ]
    write_file(MODULI, "\n".join(kept) + "\n", mode=0o644)


def _rsa_bits() -> int:
    public = RSA_HOST_KEY.with_suffix(".pub")
    if not public.is_file():
        return 0
    out = run(["ssh-keygen", "-l", "-f", str(public)], check=False).stdout
    match = re.match(r"(\d+) ", out)
    return int(match.group(1)) if match else 0


def _new_rsa_host_key() -> None:
    """A 4096-bit RSA host key (Debian makes 3072). Clients know the server by its ed25519
    key, which they prefer: that one never changes."""
    fresh = RSA_HOST_KEY.with_name("ssh_host_rsa_key.onebox-new")
    fresh_public = Path(f"{fresh}.pub")
    fresh.unlink(missing_ok=True)
    fresh_public.unlink(missing_ok=True)
    run(["ssh-keygen", "-q", "-t", "rsa", "-b", "4096", "-N", "", "-f", str(fresh)])
    fresh_public.replace(Path(f"{RSA_HOST_KEY}.pub"))
    fresh.replace(RSA_HOST_KEY)


# --------------------------------------------------------------------------- lockdown


def lockdown() -> tuple[bool, bool]:
    """Root and password login off (called once the deploy user has logged in)."""
    return ensure_sshd_config(LOCKDOWN, LOCKDOWN_TEXT, "ssh-lockdown")


def locked_down() -> bool:
    """Root and password login are off as onebox left them (setup then needs no new
    connection to prove anything)."""
    return LOCKDOWN.is_file() and LOCKDOWN.read_text() == LOCKDOWN_TEXT
