"""SSH to the server with the user's own OpenSSH client, one connection per run.

OpenSSH reads the user's ~/.ssh/config, agent and keys, and verifies host keys against
known_hosts. onebox adds: a shared master connection (ControlMaster) so that a deploy
pays one handshake, first-contact reporting (the fingerprint is shown and recorded), and
a refusal with instructions when a host key changed.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onebox import no_deploy_user
from onebox.agent.paths import ENTRY
from onebox.errors import ConnectionFailed, HostKeyError, RemoteStepFailed

CHANGED_KEY = "REMOTE HOST IDENTIFICATION HAS CHANGED"


@dataclass(frozen=True)
class Target:
    """Where to connect. `label` is what the user typed (e.g. sandbox:demo)."""

    host: str
    user: str | None = None
    port: int | None = None
    identity: Path | None = None
    known_hosts: Path | None = None  # None: the user's own known_hosts files
    label: str = ""
    extra_options: tuple[str, ...] = field(default=())
    # Who logs in while the deploy user does not exist yet (None: ssh's default user).
    fallback_user: str | None = None

    @property
    def name(self) -> str:
        return self.label or self.host


# Installed by `onebox setup`; the deploy user's sudo allows this one command.
AGENT_ENTRY = str(ENTRY)
# The user `onebox setup` creates to log in as, once root login is off.
DEPLOY_USER = "onebox"


class SSH:
    def __init__(
        self,
        target: Target,
        on_notice: Callable[[str], None] | None = None,
        shared: bool = True,
        login_fallback: bool = True,
    ) -> None:
        """shared=False: a connection of its own, never a master's (to prove that a new
        connection still gets in after setup changed the firewall or sshd).
        login_fallback: when the user is the deploy user and the server does not know it
        yet (a server before its first setup), log in as ssh's default user instead."""
        self.target = target
        self.shared = shared
        self.user = target.user
        self.login_fallback = login_fallback
        self.on_notice = on_notice or (lambda message: None)
        control_dir = Path(tempfile.gettempdir()) / f"onebox-ssh-{os.getuid()}"
        control_dir.mkdir(mode=0o700, exist_ok=True)
        # The master connection is shared only by the same target, keys and known_hosts:
        # a new practice server reusing an old one's address never rides an old master.
        salt = hashlib.sha256(repr(target).encode()).hexdigest()[:10]
        self._control = str(control_dir / f"{salt}-%C")
        self._checked_first_contact = False
        self._resolved: dict[str, str] | None = None

    # -- building the command line ---------------------------------------------------
    def options(self) -> list[str]:
        t = self.target
        opts = [
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "ServerAliveCountMax=4",
            # Each call carries the agent's code (about 600 kB, a quarter of that
            # compressed) and the project's files: on a VPS's usual upload link that is
            # most of a code-only deploy's transfer (`bench/redeploy_ab.py --upload-rate`).
            "-o",
            "Compression=yes",
        ]
        if self.shared:
            opts += [
                "-o",
                "ControlMaster=auto",
                "-o",
                f"ControlPath={self._control}",
                "-o",
                "ControlPersist=60",
            ]
        else:
            opts += ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
        if t.known_hosts is not None:
            opts += [
                "-o",
                f"UserKnownHostsFile={t.known_hosts}",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "GlobalKnownHostsFile=/dev/null",
            ]
        else:
            opts += ["-o", "StrictHostKeyChecking=accept-new"]
        if os.environ.get("ONEBOX_SSH_CONFIG"):  # like `ssh -F`: CI jobs keep their own
            opts += ["-F", os.environ["ONEBOX_SSH_CONFIG"]]
        if t.identity is not None:
            opts += ["-i", str(t.identity), "-o", "IdentitiesOnly=yes"]
        if self.user:
            opts += ["-l", self.user]
        if t.port:
            opts += ["-p", str(t.port)]
        for option in t.extra_options:
            opts += ["-o", option]
        return opts

    def argv(self, remote: Sequence[str], *, tty: bool = False) -> list[str]:
        return [
            "ssh",
            *(["-t"] if tty else ["-T"]),
            *self.options(),
            self.target.host,
            "--",
            shlex.join(remote),
        ]

    # -- facts about the connection ---------------------------------------------------
    def resolved(self) -> dict[str, str]:
        """The effective ssh configuration for the target (`ssh -G`)."""
        if self._resolved is None:
            out = subprocess.run(
                ["ssh", "-G", *self.options(), self.target.host],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            self._resolved = {}
            for line in out.splitlines():
                key, _, value = line.partition(" ")
                self._resolved.setdefault(key, value)
        return self._resolved

    @property
    def login_user(self) -> str:
        return self.resolved().get("user", "root")

    @property
    def hostname(self) -> str:
        return self.resolved().get("hostname", self.target.host)

    def sudo(self, argv: Sequence[str]) -> list[str]:
        """Prefix argv with a non-interactive sudo unless we log in as root."""
        self._first_contact()  # it settles who logs in
        return list(argv) if self.login_user == "root" else ["sudo", "-n", "--", *argv]

    def agent_command(self, args: Sequence[str]) -> list[str]:
        """The server's onebox-agent: with no args it reads an agent stream, else it runs
        one of its commands (logs, manage, dbshell, ca, dump). It is all the deploy user
        may run as root."""
        return self.sudo([AGENT_ENTRY, *args])

    # -- running -----------------------------------------------------------------------
    def connect(self) -> None:
        """Settle the login (and record a new host's key) before building commands: the
        login user decides how the agent is started."""
        self._first_contact()

    def popen(self, remote: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        self._first_contact()
        return subprocess.Popen(self.argv(remote), **kwargs)

    def run(
        self, remote: Sequence[str], *, input: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        self._first_contact()
        result = subprocess.run(self.argv(remote), input=input, capture_output=True, check=False)
        if result.returncode == 255:
            raise self.connection_error(result.stderr.decode(errors="replace"))
        if check and result.returncode != 0:  # connected fine; the command itself failed
            raise RemoteStepFailed(
                f"`{shlex.join(remote)}` failed on {self.target.name} (exit {result.returncode})",
                host=self.target.name,
                output=result.stderr.decode(errors="replace")[-2000:],
            )
        return result

    def interactive(self, remote: Sequence[str]) -> int:
        """Run with the user's terminal attached (a pty only when there is one)."""
        self._first_contact()
        return subprocess.call(self.argv(remote, tty=sys.stdin.isatty()))

    def close(self) -> None:
        if not self.shared:
            return
        # `stop`, not `exit`: the master takes no new sessions and ends with its last one,
        # so another onebox run sharing it (a deploy still running) is not cut off.
        subprocess.run(
            ["ssh", *self.options(), "-O", "stop", self.target.host],
            capture_output=True,
            check=False,
        )

    # -- host keys ---------------------------------------------------------------------
    def known_hosts_files(self) -> list[str]:
        if self.target.known_hosts is not None:
            return [str(self.target.known_hosts)]
        files = self.resolved().get("userknownhostsfile", "~/.ssh/known_hosts").split()
        return [os.path.expanduser(f) for f in files]

    def _host_key_name(self) -> str:
        port = self.resolved().get("port", "22")
        return self.hostname if port == "22" else f"[{self.hostname}]:{port}"

    def is_known(self) -> bool:
        name = self._host_key_name()
        for path in self.known_hosts_files():
            if Path(path).is_file():
                found = subprocess.run(
                    ["ssh-keygen", "-F", name, "-f", path], capture_output=True, check=False
                )
                if found.returncode == 0:
                    return True
        return False

    def _first_contact(self) -> None:
        """Before the first command: on the first connection ever to this host, show the
        key we are about to trust; and pick the login (see _fallback_login)."""
        if self._checked_first_contact:
            return
        self._checked_first_contact = True
        known = self.is_known()
        may_fall_back = self.login_fallback and self.user == DEPLOY_USER
        if known and not may_fall_back:
            return
        if may_fall_back and known and no_deploy_user.remembered(self.target):
            # Each refused login as the deploy user counts toward a ban by the fail2ban
            # that setup installs: once a server is known to lack it, go straight in.
            self.user, self._resolved = self.target.fallback_user, None
            result = self._probe()
            if result.returncode != 255:
                return
            no_deploy_user.forget(self.target)  # set up since (from elsewhere): as configured
            self.user, self._resolved = DEPLOY_USER, None
        result = self._probe()
        stderr = result.stderr.decode(errors="replace")
        if result.returncode == 255 and may_fall_back and "Permission denied" in stderr:
            result, stderr = self._fallback_login(stderr)
        if result.returncode == 255:
            raise self.connection_error(stderr)
        if not known:
            self._show_recorded_key()

    def _probe(self) -> subprocess.CompletedProcess[bytes]:
        """Log in once. A shared connection opens its master and runs nothing (-N; -f: it
        goes to the background once logged in): the command that follows rides it, so
        the probe costs no round trip of its own. stdin closed: the user's input (a
        piped SQL script) is for the real command."""
        if self.shared:
            argv = ["ssh", "-N", "-f", *self.options(), self.target.host]
        else:
            argv = self.argv(["true"])
        return subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, check=False)

    def _fallback_login(self, refused: str) -> tuple[subprocess.CompletedProcess[bytes], str]:
        """The deploy user exists only once `onebox setup` made it: on a server before
        that, log in as ssh's default user (root, or your ssh config's) this time. If that
        is refused too, the error is about the deploy user, as configured."""
        self.user, self._resolved = self.target.fallback_user, None
        result = self._probe()
        stderr = result.stderr.decode(errors="replace")
        if result.returncode == 255 and "Permission denied" in stderr:
            self.user, self._resolved = DEPLOY_USER, None
            return result, refused
        no_deploy_user.remember(self.target)
        self.on_notice(
            f"{self.target.name} has no deploy user {DEPLOY_USER!r} yet (`onebox setup` makes "
            f"it): logging in as {self.login_user!r} until it does"
        )
        return result, stderr

    def _show_recorded_key(self) -> None:
        name = self._host_key_name()
        for path in self.known_hosts_files():
            if not Path(path).is_file():
                continue
            shown = subprocess.run(
                ["ssh-keygen", "-l", "-F", name, "-f", path],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            prints = [line.split()[-1] for line in shown.splitlines() if not line.startswith("#")]
            if prints:
                self.on_notice(
                    f"first contact with {self.target.name}: recorded its host key "
                    f"{', '.join(prints)} in {path}. Compare it with the fingerprint your "
                    "provider shows for this server."
                )
                return

    def connection_error(self, stderr: str) -> Exception:
        name = self.target.name
        if CHANGED_KEY in stderr:
            files = " ".join(self.known_hosts_files())
            return HostKeyError(
                f"the host key of {name} changed since onebox first connected: this may be an "
                "attack (someone between you and the server), or the server was reinstalled",
                host=name,
                hint=(
                    f"if you reinstalled it, verify the new key's fingerprint with your "
                    f"provider, then run `ssh-keygen -R {self._host_key_name()} -f {files}` "
                    "and try again"
                ),
            )
        if "Host key verification failed" in stderr:
            return HostKeyError(
                f"the host key of {name} is not known and cannot be verified",
                host=name,
                hint="connect once with `ssh` to check and record it",
            )
        return ConnectionFailed(
            f"cannot connect to {name}",
            host=name,
            output=stderr.strip()[-1500:],
            hint=_connection_hint(stderr, self.login_user),
        )


def _connection_hint(stderr: str, user: str) -> str:
    if "Could not resolve hostname" in stderr:
        return "check the host name in onebox.toml ([server] host) or pass --host"
    if "Permission denied" in stderr:
        return (
            f"the server refused your key for user {user!r}: add your public key to its "
            "~/.ssh/authorized_keys, or set [server] user / your ssh config"
        )
    if "Connection refused" in stderr:
        return "nothing listens for SSH there: check the address and port, and that sshd runs"
    if "timed out" in stderr or "No route to host" in stderr:
        return "the server does not answer: check the address, that it is up, and any firewall"
    return "run `ssh HOST` by hand to see what goes wrong"
