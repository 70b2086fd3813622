"""Practice servers: real Debian systems booted with systemd-nspawn on this machine.

An image is built once per Debian release with debootstrap and cached; each practice
server is a copy of it with its own SSH host keys, an SSH key onebox generated, its
own network namespace and a private address, NATed out so apt and pip reach the mirrors.
Everything a server leaves behind (veth, nftables table, mounts, half-built images) is
cleaned up by the next create or destroy, because a practice server can die without one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from onebox.errors import OneboxError, UnsupportedError
from onebox.transport import SSH, Target

STATE_DIR = Path(os.environ.get("ONEBOX_SANDBOX_DIR", "/var/lib/onebox"))
SUITES = {"12": "bookworm", "13": "trixie"}
NETWORK = "10.213"  # the private /16 kept for practice servers: 10.213.<index>.0/24
NFT_TABLE = "onebox_sandbox"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = "systemd,systemd-sysv,dbus,openssh-server,python3,sudo,iproute2,ca-certificates"


class SandboxError(OneboxError):
    pass


@dataclass
class Sandbox:
    name: str
    index: int
    debian: str
    pid: int = 0

    @property
    def dir(self) -> Path:
        return STATE_DIR / "sandboxes" / self.name

    @property
    def rootfs(self) -> Path:
        return self.dir / "rootfs"

    @property
    def address(self) -> str:
        return f"{NETWORK}.{self.index}.2"

    @property
    def gateway(self) -> str:
        return f"{NETWORK}.{self.index}.1"

    @property
    def veth(self) -> str:
        return f"ve-{self.machine}"

    @property
    def machine(self) -> str:
        return f"obx-{self.index}"

    @property
    def running(self) -> bool:
        return self.pid > 0 and _alive(self.pid)

    def console(self, command: str) -> list[str]:
        """argv running `command` as root inside the server, without SSH (whatever its
        sshd and firewall let in): the practice server's console."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        if not self.running or not children:
            raise SandboxError(f"practice server {self.name} is not running")
        init = children[0]  # nspawn's only child: the server's systemd
        env = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        return [
            "nsenter",
            "-t",
            init,
            "-a",
            "-r",
            "-w",
            "env",
            "-i",
            env,
            "HOME=/root",
            "LANG=C.UTF-8",  # as an SSH session from this machine would have it
            "/bin/sh",
            "-c",
            command,
        ]

    def target(self) -> Target:
        return Target(
            host=self.address,
            user="root",
            identity=self.dir / "id_ed25519",
            known_hosts=self.dir / "known_hosts",
            label=f"sandbox:{self.name}",
        )

    def save(self) -> None:
        (self.dir / "state.json").write_text(json.dumps(asdict(self)))


def require_host() -> None:
    if platform.system() != "Linux":
        raise UnsupportedError(
            "practice servers need Linux (systemd-nspawn)",
            hint="rent a small Debian server and use --host instead",
        )
    if os.geteuid() != 0:
        raise UnsupportedError(
            "practice servers need root (they boot containers)",
            hint="run the sandbox command with sudo",
        )
    missing = [
        t
        for t in ("systemd-nspawn", "debootstrap", "nft", "ip", "ssh-keygen")
        if shutil.which(t) is None
    ]
    if missing:
        raise UnsupportedError(
            f"missing tools: {', '.join(missing)}",
            hint="apt-get install systemd-container debootstrap nftables iproute2 openssh-client",
        )


def load(name: str) -> Sandbox:
    _check_name(name)
    state = STATE_DIR / "sandboxes" / name / "state.json"
    if not state.is_file():
        raise SandboxError(
            f"no practice server named {name!r}",
            hint=f"`onebox sandbox list` shows them; `onebox sandbox create {name}` makes it",
        )
    return Sandbox(**json.loads(state.read_text()))


def list_all() -> list[Sandbox]:
    folder = STATE_DIR / "sandboxes"
    if not folder.is_dir():
        return []
    found = []
    for state in sorted(folder.glob("*/state.json")):
        try:
            found.append(Sandbox(**json.loads(state.read_text())))
        except (ValueError, TypeError):
            continue
    return found


def create(name: str, debian: str = "12", log=print) -> Sandbox:
    require_host()
    if debian not in SUITES:
        raise SandboxError(f"unknown Debian version {debian!r}", hint="use --debian 12 or 13")
    _check_name(name)
    existing = STATE_DIR / "sandboxes" / name
    if existing.exists():
        try:
            old = load(name)
        except SandboxError:
            old = None
        if old is not None and old.running:
            raise SandboxError(
                f"practice server {name!r} already runs at {old.address}",
                hint=f"use it, or `onebox sandbox destroy {name}` first",
            )
        log(f"cleaning up what a dead practice server {name!r} left behind")
        _cleanup(old, existing)
    with _creation_lock():
        image = ensure_image(debian, log)
        box = Sandbox(name=name, index=_free_index(), debian=debian)
        box.dir.mkdir(parents=True)
        box.save()  # claims the index before another creation may look
    log(f"copying the Debian {debian} image")
    subprocess.run(["cp", "-a", "--reflink=auto", str(image), str(box.rootfs)], check=True)
    _personalise(box)
    _network_up()
    _boot(box, log)
    return box


@contextlib.contextmanager
def _creation_lock() -> Iterator[None]:
    """One creation at a time builds the image and picks a free index (two at once would
    pick the same one: a server only counts as used once its state is saved)."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "create.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


# A name is a folder under STATE_DIR/sandboxes: it can never be a path ("..", "/x", "").
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,39}")


def _check_name(name: str) -> None:
    if not NAME.fullmatch(name):
        raise SandboxError(
            f"bad practice server name {name!r}",
            hint="use ASCII letters, digits and dashes, starting with a letter or digit, "
            "at most 40 characters",
        )


def ensure_image(debian: str, log=print) -> Path:
    suite = SUITES[debian]
    image = STATE_DIR / "images" / suite
    if (image / ".onebox-image-complete").is_file():
        return image
    partial = image.with_name(f"{suite}.partial")
    shutil.rmtree(partial, ignore_errors=True)  # a half-written image from a killed build
    shutil.rmtree(image, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    log(f"building the Debian {debian} image with debootstrap (once; about a minute)")
    result = subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", suite, str(partial), MIRROR],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SandboxError(
            f"debootstrap of Debian {debian} failed",
            output=(result.stdout + result.stderr)[-2000:],
            hint="check that this machine reaches the Debian mirror",
        )
    _prepare_image(partial, suite)
    (partial / ".onebox-image-complete").touch()
    partial.rename(image)
    return image


def _prepare_image(root: Path, suite: str) -> None:
    (root / "etc/apt/sources.list").write_text(
        f"deb {MIRROR} {suite} main\ndeb {MIRROR} {suite}-updates main\n"
        f"deb http://deb.debian.org/debian-security {suite}-security main\n"
    )
    unit = root / "etc/systemd/system/onebox-net.service"
    unit.write_text(NET_UNIT)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "onebox-net.service").symlink_to("/etc/systemd/system/onebox-net.service")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()


NET_UNIT = """[Unit]
Description=practice server network (written by onebox sandbox)
Before=network-online.target ssh.service
[Service]
Type=oneshot
RemainAfterExit=yes
EnvironmentFile=/etc/onebox-sandbox.env
ExecStart=/sbin/ip link set host0 up
ExecStart=/sbin/ip addr replace ${ADDRESS}/24 dev host0
ExecStart=/sbin/ip route replace default via ${GATEWAY}
[Install]
WantedBy=multi-user.target
"""


def _personalise(box: Sandbox) -> None:
    root = box.rootfs
    (root / "etc/onebox-sandbox.env").write_text(f"ADDRESS={box.address}\nGATEWAY={box.gateway}\n")
    (root / "etc/hostname").write_text(f"{box.name}\n")
    (root / "etc/hosts").write_text(
        f"127.0.0.1 localhost\n127.0.1.1 {box.name}\n::1 localhost ip6-localhost ip6-loopback\n"
    )
    resolv = root / "etc/resolv.conf"
    resolv.unlink(missing_ok=True)
    shutil.copy("/etc/resolv.conf", resolv)
    # Trust what this machine trusts (a company proxy's CA, say) so apt and pip work inside.
    local_cas = Path("/usr/local/share/ca-certificates")
    if local_cas.is_dir() and any(local_cas.iterdir()):
        shutil.copytree(local_cas, root / "usr/local/share/ca-certificates", dirs_exist_ok=True)
        subprocess.run(
            ["chroot", str(root), "update-ca-certificates"], capture_output=True, check=True
        )
    subprocess.run(["ssh-keygen", "-A", "-f", str(root)], capture_output=True, check=True)
    key = box.dir / "id_ed25519"
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            f"onebox-sandbox-{box.name}",
            "-f",
            str(key),
        ],
        check=True,
    )
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    shutil.copy(key.with_suffix(".pub"), ssh_dir / "authorized_keys")
    # The host key comes from the filesystem we just wrote: verified, not trusted on first use.
    host_key = (root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
    (box.dir / "known_hosts").write_text(f"{box.address} {host_key[0]} {host_key[1]}\n")


def _free_index() -> int:
    used = {box.index for box in list_all()}
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    for index in range(1, 250):
        if index not in used and f"ve-obx-{index}@" not in links:
            return index
    raise SandboxError(
        "no free practice server slot (249 in use)",
        hint="destroy some with `onebox sandbox destroy`",
    )


def _network_up() -> None:
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
    # NAT only: practice servers reach the package mirrors through this machine.
    ruleset = NAT_RULES.format(table=NFT_TABLE, net=f"{NETWORK}.0.0/16")
    subprocess.run(["nft", "delete", "table", "ip", NFT_TABLE], capture_output=True)
    subprocess.run(["nft", "-f", "-"], input=ruleset, text=True, check=True)


NAT_RULES = """table ip {table} {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {net} ip daddr != {net} masquerade
    }}
}}
"""


def _boot(box: Sandbox, log) -> None:
    nspawn_dir = Path("/run/systemd/nspawn")
    nspawn_dir.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mountpoint", "-q", str(nspawn_dir)]).returncode != 0:
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(nspawn_dir)], check=True)
    log(f"booting practice server {box.name} (Debian {box.debian}) at {box.address}")
    with open(box.dir / "console.log", "wb") as console:
        process = subprocess.Popen(
            [
                "systemd-nspawn",
                "-D",
                str(box.rootfs),
                "--boot",
                "--network-veth",
                "--register=no",
                "--keep-unit",
                "--console=pipe",
                "--machine",
                box.machine,
            ],
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    box.pid = process.pid
    box.save()
    _wait(lambda: _veth_exists(box.veth), 30, box, "its network interface did not appear")
    subprocess.run(["ip", "addr", "replace", f"{box.gateway}/24", "dev", box.veth], check=True)
    subprocess.run(["ip", "link", "set", box.veth, "up"], check=True)
    _wait(lambda: _port_open(box.address, 22), 90, box, "SSH did not come up")
    # Through the console, not SSH: a server set up by onebox lets root in no more.
    subprocess.run(
        box.console("systemctl is-system-running --wait"), capture_output=True, timeout=120
    )


def _wait(ready, seconds: float, box: Sandbox, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not box.running:
            tail = (box.dir / "console.log").read_text(errors="replace")[-1500:]
            raise SandboxError(f"practice server {box.name} stopped while booting", output=tail)
        if ready():
            return
        time.sleep(0.3)
    raise SandboxError(
        f"practice server {box.name}: {what} within {seconds:.0f}s",
        output=(box.dir / "console.log").read_text(errors="replace")[-1500:],
    )


def _veth_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def _port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5) as sock:
            return bool(sock.recv(4).startswith(b"SSH"))
    except OSError:
        return False


def start(name: str, log=print) -> Sandbox:
    """Boot a stopped practice server again (rebooted from inside, or `sandbox stop`)."""
    require_host()
    box = load(name)
    if box.running:
        log(f"practice server {name} already runs at {box.address}")
        return box
    subprocess.run(["ip", "link", "delete", box.veth], capture_output=True)  # a leftover
    _network_up()
    _boot(box, log)
    return box


def stop(name: str, log=print) -> Sandbox:
    """Power a practice server off, keeping its disk; `sandbox start` boots it again."""
    require_host()
    box = load(name)
    _stop(box)
    subprocess.run(["ip", "link", "delete", box.veth], capture_output=True)
    SSH(box.target()).close()
    box.pid = 0
    box.save()
    log(f"practice server {name} stopped")
    return box


def destroy(name: str, log=print) -> None:
    require_host()
    _check_name(name)
    folder = STATE_DIR / "sandboxes" / name
    if not (folder / "state.json").is_file() and not (folder / "rootfs").is_dir():
        raise SandboxError(
            f"no practice server named {name!r}", hint="`onebox sandbox list` shows them"
        )
    try:
        box = load(name)
    except SandboxError:
        box = None
    _cleanup(box, folder)
    log(f"practice server {name} destroyed")


def _cleanup(box: Sandbox | None, folder: Path) -> None:
    if box is not None:
        _stop(box)
        subprocess.run(["ip", "link", "delete", box.veth], capture_output=True)
        SSH(box.target()).close()
    shutil.rmtree(folder, ignore_errors=True)
    if not any(other.running for other in list_all()):
        subprocess.run(["nft", "delete", "table", "ip", NFT_TABLE], capture_output=True)


def _stop(box: Sandbox) -> None:
    if not box.running:
        return
    os.kill(box.pid, signal.SIGTERM)  # nspawn asks the container to power off
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _alive(box.pid):
        time.sleep(0.2)
    if _alive(box.pid):
        os.killpg(box.pid, signal.SIGKILL)
        time.sleep(0.5)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    # after a reboot the pid may belong to something else: check it is our nspawn
    # (cmdline reads empty for an instant while the process execs)
    return ") Z " not in stat and (not cmdline or b"systemd-nspawn" in cmdline)
