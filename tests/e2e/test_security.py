"""A server as `onebox setup` leaves it: checked with the tools security people use.

One fresh practice server per Debian release, set up over its only SSH session (as root,
the first time) with a MariaDB app, then deployed. From the host: a bounded scan of
every TCP port, logins as root, with a password and as the deploy user, ssh-audit's
hardened Debian policy, fail2ban banning a second network namespace of the test's own.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import (
    ROOT,
    Server,
    copy_project,
    fetch,
    onebox,
    onebox_background,
    onebox_json,
    practice_server,
)

pytestmark = pytest.mark.e2e

DOMAIN = "sec.test"
POLICY = {"12": "Hardened Debian 12 (version 3)", "13": "Hardened Debian 13 (version 1)"}


@pytest.fixture(scope="module", params=["12", "13"], ids=["debian12", "debian13"])
def secured(request, tmp_path_factory) -> Iterator[tuple[Server, Path, str]]:
    servers = practice_server(f"sec{request.param}", request.param, tmp_path_factory)
    server = next(servers)
    try:
        project = copy_project(ROOT / "examples" / "mvp", tmp_path_factory.mktemp("sec") / "sec")
        config = project / "onebox.toml"
        text = config.read_text().replace('name = "mvp"', 'name = "sec"')
        text = text.replace('host = "sandbox:demo"', f'host = "{server.host}"')
        text = text.replace('engine = "sqlite"', 'engine = "mysql"')
        text += "\n[security]\nconfirm_within = 20\n"
        config.write_text(text.replace('domain = ""', f'domain = "{DOMAIN}"'))
        setup = onebox("setup", cwd=project)
        onebox("deploy", cwd=project)
        server.ca.write_text(onebox("ca", cwd=project).stdout)
        yield server, project, setup.stderr
    finally:
        servers.close()  # destroys the practice server


def netns(name: str, host_address: str, address: str) -> None:
    """A second network namespace on this machine, routed to the practice servers."""
    commands = [
        f"ip netns add {name}",
        f"ip link add {name}-h type veth peer name {name}-n",
        f"ip link set {name}-n netns {name}",
        f"ip addr add {host_address}/30 dev {name}-h",
        f"ip link set {name}-h up",
        f"ip -n {name} addr add {address}/30 dev {name}-n",
        f"ip -n {name} link set {name}-n up",
        f"ip -n {name} link set lo up",
        f"ip -n {name} route add default via {host_address}",
    ]
    for command in commands:
        subprocess.run(command.split(), check=True, capture_output=True)


def drop_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    subprocess.run(["ip", "link", "del", f"{name}-h"], capture_output=True)


@pytest.fixture(scope="module")
def outsider(secured) -> Iterator[list[str]]:
    """A machine elsewhere on the network (a network namespace of this test's own), for
    what must fail: logins as root or with a password, scans. OpenSSH 10 (Debian 13)
    holds back addresses whose logins fail (PerSourcePenalties): failures must not come
    from the address onebox itself uses."""
    server = secured[0]
    name = f"obxout{server.debian}"
    drop_netns(name)
    netns(name, f"10.213.24{server.debian[-1]}.1", f"10.213.24{server.debian[-1]}.2")
    yield ["ip", "netns", "exec", name]
    drop_netns(name)


def ssh(server: Server, user: str, *options: str, command: str = "true", via: list[str] = ()):
    key = f"/var/lib/onebox/sandboxes/{server.name}/id_ed25519"
    known = f"/var/lib/onebox/sandboxes/{server.name}/known_hosts"
    argv = ["ssh", "-i", key, "-o", f"UserKnownHostsFile={known}", "-o", "BatchMode=yes"]
    argv = [*via, *argv, "-o", "ConnectTimeout=10", *options, f"{user}@{server.address}", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_setup_over_the_only_session_then_logs_in_as_the_deploy_user(secured):
    _, project, output = secured
    # the first setup: no deploy user yet, so root; then two new connections as onebox
    assert "has no deploy user 'onebox' yet" in output
    assert output.count("a new SSH connection as onebox gets in") == 2
    status = onebox_json("status", cwd=project)["result"]
    assert status["health"] == 200
    again = onebox("setup", cwd=project)  # idempotent: nothing to confirm, nothing changed
    assert "firewall (unchanged)" in again.stderr and "ssh access (unchanged)" in again.stderr
    assert "a new SSH connection" not in again.stderr  # nothing changed: nothing to prove


def test_only_ssh_http_and_https_answer_from_outside(secured, outsider):
    server, _, _ = secured
    listening = server.ssh("ss -Hltn")
    assert "127.0.0.1:3306" in listening  # MariaDB runs, on localhost only
    # and a service bound to every address is dropped all the same
    server.ssh("systemd-run --unit=onebox-test-listener python3 -m http.server 5432")
    try:
        time.sleep(1)
        assert "0.0.0.0:5432" in server.ssh("ss -Hltn")
        scan = [*outsider, sys.executable, "-m", "tests.e2e.portscan", server.address]
        found = subprocess.run(scan, cwd=ROOT, capture_output=True, text=True, timeout=300)
        open_ports = json.loads(found.stdout)
    finally:
        server.ssh("systemctl stop onebox-test-listener", check=False)
    assert open_ports == [22, 80, 443]
    ruleset = server.ssh("nft list table inet onebox")
    assert "policy drop" in ruleset and "tcp dport { 22, 80, 443 }" in ruleset
    assert "inet" in ruleset.split("\n")[0]  # one table for IPv4 and IPv6


def test_root_and_password_logins_are_refused_and_the_deploy_user_gets_in(secured, outsider):
    server, _, _ = secured
    assert ssh(server, "onebox").returncode == 0
    root = ssh(server, "root", via=outsider)
    assert root.returncode == 255 and "Permission denied" in root.stderr
    password = ssh(
        server,
        "onebox",
        "-o",
        "PreferredAuthentications=password,keyboard-interactive",
        "-o",
        "PubkeyAuthentication=no",
        via=outsider,
    )
    assert password.returncode == 255 and "Permission denied (publickey)" in password.stderr
    effective = server.ssh("sshd -T")
    for setting in ("permitrootlogin no", "passwordauthentication no", "x11forwarding no"):
        assert setting in effective
    # its sudo runs onebox's agent and nothing else
    refused = ssh(server, "onebox", command="sudo -n id")
    assert refused.returncode != 0 and "password is required" in refused.stderr


def test_full_sudo_only_when_asked_and_the_audit_says_so(secured):
    server, project, _ = secured
    config = project / "onebox.toml"
    original = config.read_text()
    config.write_text(original.replace("[security]\n", '[security]\ndeploy_sudo = "all"\n'))
    try:
        onebox("setup", cwd=project)
        allowed = ssh(server, "onebox", command="sudo -n id -u")
        assert allowed.returncode == 0 and allowed.stdout.strip() == "0", allowed
        checks = onebox_json("audit", cwd=project, check=False)["result"]["checks"]
        sudo = next(c for c in checks if c["name"].startswith("deploy user's sudo"))
        assert sudo["status"] == "warn" and "anything as root" in sudo["detail"], sudo
    finally:
        config.write_text(original)
    onebox("setup", cwd=project)  # back to the agent alone
    refused = ssh(server, "onebox", command="sudo -n id")
    assert refused.returncode != 0 and "password is required" in refused.stderr


def test_ssh_audit_passes_the_hardened_debian_policy(secured, outsider):
    server, _, _ = secured
    audit = Path(sys.executable).with_name("ssh-audit")
    result = subprocess.run(
        [*outsider, str(audit), "-P", POLICY[server.debian], server.address],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Passed" in result.stdout, result.stdout


def wait_for_ban(server: Server, jail: str, address: str, within: float = 30) -> None:
    """Until the address is banned in the jail *and* in nftables: fail2ban lists a ban
    before its action has run, and a connection let in during that gap is then rejected
    mid-stream, which TCP sits out for minutes rather than reporting."""
    deadline = time.monotonic() + within
    while True:
        status = server.ssh(f"fail2ban-client status {jail}")
        rules = server.ssh("nft list table inet f2b-table", check=False)
        if (address in status and address in rules) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert address in status, status
    assert address in rules, rules


def test_fail2ban_bans_an_address_that_keeps_failing(secured):
    server, _, _ = secured
    name = f"obxf2b{server.debian}"
    host_side, attacker = f"10.213.25{server.debian[-1]}.1", f"10.213.25{server.debian[-1]}.2"
    drop_netns(name)
    netns(name, host_side, attacker)
    attempt = ["ip", "netns", "exec", name, "ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]
    attempt += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    try:
        assert "sshd" in server.ssh("fail2ban-client status")
        for _ in range(6):  # an unknown user, six times: each is a failure in the jail
            # (banned halfway through an attempt, its packets go unanswered: a timeout)
            with contextlib.suppress(subprocess.TimeoutExpired):
                run = [*attempt, f"mallory@{server.address}", "true"]
                subprocess.run(run, capture_output=True, timeout=10)
        wait_for_ban(server, "sshd", attacker)
        blocked = subprocess.run(
            [*attempt, f"x@{server.address}", "true"], capture_output=True, text=True, timeout=30
        )
        assert re.search("refused|timed out", blocked.stderr), blocked.stderr
        assert ssh(server, "onebox").returncode == 0  # only the attacker is shut out
    finally:
        server.ssh(f"fail2ban-client set sshd unbanip {attacker}", check=False)
        drop_netns(name)


def test_fail2ban_bans_an_address_that_keeps_failing_django_logins(secured):
    """Wrong passwords on the Django admin, from a second network namespace: the app's
    WSGI wrapper reports each failure to the journal, fail2ban bans the address from
    HTTP(S) (not from SSH), and everyone else still gets the site."""
    server, _, _ = secured
    name = f"obxweb{server.debian}"
    host_side, attacker = f"10.213.23{server.debian[-1]}.1", f"10.213.23{server.debian[-1]}.2"
    drop_netns(name)
    netns(name, host_side, attacker)
    jar = server.ca.with_name(f"{name}.cookies")
    curl = ["ip", "netns", "exec", name, "curl", "-sS", "--max-time", "5", "--cacert"]
    curl += [str(server.ca), "--resolve", f"{DOMAIN}:443:{server.address}", "-b", str(jar)]
    curl += ["-c", str(jar)]
    login = f"https://{DOMAIN}/admin/login/"
    try:
        for _ in range(10):
            page = subprocess.run([*curl, login], capture_output=True, text=True, timeout=10)
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.stdout)
            assert token, page.stdout + page.stderr
            form = f"csrfmiddlewaretoken={token.group(1)}&username=admin&password=wrong"
            post = [*curl, "-o", "/dev/null", "-w", "%{http_code}", "-e", login, "-d", form]
            answer = subprocess.run([*post, login], capture_output=True, text=True, timeout=10)
            assert answer.stdout == "200", answer  # the form again: a failed login
        assert "failed login from " + attacker in server.ssh(
            "journalctl -q -o cat SYSLOG_IDENTIFIER=onebox-auth"
        )
        wait_for_ban(server, "onebox-django", attacker)
        blocked = subprocess.run([*curl, login], capture_output=True, text=True, timeout=10)
        assert blocked.returncode != 0, blocked.stdout  # refused (or unanswered)
        via = ["ip", "netns", "exec", name]
        assert ssh(server, "onebox", via=via).returncode == 0  # SSH still open to it
        assert fetch(login, server.ca, resolve=f"{DOMAIN}:443:{server.address}").status == 200
    finally:
        server.ssh(f"fail2ban-client set onebox-django unbanip {attacker}", check=False)
        drop_netns(name)
        jar.unlink(missing_ok=True)


def test_security_updates_are_on_and_reboots_are_not(secured):
    server, _, _ = secured
    periodic = server.ssh("apt-config dump APT::Periodic")
    assert 'APT::Periodic::Unattended-Upgrade "1"' in periodic
    assert 'Unattended-Upgrade::Automatic-Reboot "false"' in server.ssh(
        "apt-config dump Unattended-Upgrade::Automatic-Reboot"
    )
    assert "enabled" in server.ssh("systemctl is-enabled apt-daily-upgrade.timer")
    # setup installed the waiting security updates, then restarted what is safe to restart:
    # journald and systemd itself do not keep running the replaced libraries
    stale = server.ssh("needrestart -b -r l")
    assert "systemd-journald" not in stale and "systemd-manager" not in stale, stale


# An unattended upgrade in the middle of its work: it holds unattended-upgrade's lock and
# pid file, and on SIGTERM takes 3 s to finish its package.
FAKE_UPGRADE = (
    "import fcntl, os, signal, sys, time\n"
    "fd = os.open('/run/unattended-upgrades.lock', os.O_RDWR | os.O_CREAT, 0o640)\n"
    "fcntl.lockf(fd, fcntl.LOCK_EX)\n"
    "open('/run/unattended-upgrades.pid', 'w').write(str(os.getpid()))\n"
    "def finish(*_):\n"
    "    time.sleep(3)\n"
    "    open('/run/obx-upgrade.finished', 'w').write('1')\n"
    "    os.unlink('/run/unattended-upgrades.pid')\n"
    "    sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, finish)\n"
    "open('/run/obx-upgrade.ready', 'w').write('1')\n"
    "while True:\n"
    "    time.sleep(1)\n"
)


def test_an_upgrade_in_progress_is_waited_for_at_shutdown_with_no_process_waiting_all_day(
    secured,
):
    server, _, _ = secured
    assert server.ssh("systemctl is-active unattended-upgrades").strip() == "active"
    assert "unattended-upgrade-shutdown" not in server.ssh("ps -eo args")
    server.ssh("rm -f /run/obx-upgrade.*")
    server.ssh(f"cat > /run/obx-upgrade.py <<'EOF'\n{FAKE_UPGRADE}EOF")
    server.ssh("systemd-run --quiet --unit obx-upgrade python3 /run/obx-upgrade.py")
    try:
        deadline = time.monotonic() + 10
        while server.ssh("test -e /run/obx-upgrade.ready && echo ready || true") != "ready\n":
            assert time.monotonic() < deadline, "the simulated upgrade did not start"
            time.sleep(0.2)
        # what systemd does to the unit at shutdown
        started = time.monotonic()
        server.ssh("systemctl stop unattended-upgrades")
        waited = time.monotonic() - started
        assert server.ssh("cat /run/obx-upgrade.finished", check=False) == "1"
        assert waited >= 2.5, f"the shutdown went on after {waited:.1f} s, mid-package"
    finally:
        server.ssh("systemctl stop obx-upgrade; systemctl reset-failed obx-upgrade", check=False)
        server.ssh("systemctl start unattended-upgrades; rm -f /run/obx-upgrade.*")


def test_history_says_who_did_what(secured):
    _, project, _ = secured
    entries = onebox_json("history", cwd=project)["result"]["entries"]
    actions = [(e["action"], e["result"]) for e in entries]
    assert ("setup", "ok") in actions and ("deploy", "ok") in actions
    deploy = next(e for e in entries if e["action"] == "deploy")
    assert deploy["login"] == "onebox" and "@" in deploy["by"]
    assert re.fullmatch(r"release \d{8}-\d{6}-\d{3}", deploy["detail"])


def test_history_records_how_data_leaves_and_access_changes(secured, tmp_path):
    """manage, run, env list --reveal, db pull and the root-login lockdown are in the
    server's history, with who did them; a finished operation shows once."""
    _, project, _ = secured
    onebox("manage", "check", cwd=project)
    onebox("run", "python", "-c", "print('hi')", cwd=project)
    onebox("env", "list", "--reveal", cwd=project)
    onebox("backup", cwd=project)
    onebox("db", "pull", str(tmp_path / "dump.sql"), cwd=project)
    entries = onebox_json("history", "-n", "200", cwd=project)["result"]["entries"]
    seen = {(e["action"], e.get("detail", "")): e for e in entries}
    assert seen[("manage", "check")]["login"] == "onebox"
    assert ("run", "python") in seen
    assert seen[("env-list", "secret values shown")]["result"] == "ok"
    assert any(action == "dump" and detail.startswith("backup part ") for action, detail in seen)
    assert ("confirm", "root and password logins off") in seen
    # an operation with an outcome shows once (its start line is folded into it)
    runs = [e["run"] for e in entries if e.get("run") and e["result"] != "started"]
    assert len(runs) == len(set(runs))
    assert not [e for e in entries if e["result"] == "started" and e.get("run") in runs]


def test_an_unconfirmed_change_undoes_itself(secured):
    """The client dies between the firewall change and its confirmation (as it would if
    the new rules shut it out): the server puts the old rules back by itself."""
    server, project, _ = secured
    config = project / "onebox.toml"
    original = config.read_text()
    config.write_text(
        original.replace("confirm_within = 20", "confirm_within = 20\nopen_ports = [8080]")
    )
    process = onebox_background("setup", cwd=project)
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if re.search(r"✓ firewall\b", line):
                break
        process.kill()  # before it could confirm
        process.wait()
        assert "8080" in server.ssh("nft list table inet onebox")
        deadline = time.monotonic() + 60
        while "8080" in server.ssh("nft list table inet onebox") and time.monotonic() < deadline:
            time.sleep(1)
        assert "8080" not in server.ssh("nft list table inet onebox")
    finally:
        config.write_text(original)
    onebox("setup", cwd=project)  # and the next setup is fine
    assert server.ssh("ls /var/lib/onebox/guards").strip() == ""
    assert (
        fetch(f"https://{DOMAIN}/", server.ca, resolve=f"{DOMAIN}:443:{server.address}").status
        == 200
    )


def test_audit_passes_then_fails_naming_a_protection_removed_by_hand(secured):
    server, project, _ = secured
    onebox("backup", cwd=project)
    onebox("backup", "verify", cwd=project)
    report = onebox_json("audit", cwd=project)["result"]
    assert report["failed"] == [] and report["score"] == 100, report
    names = {check["name"]: check for check in report["checks"]}
    for unit in ("onebox-sec@", "onebox-sec-backup", "onebox-sec-verify"):
        check = next(c for n, c in names.items() if n.startswith(f"sandbox of {unit}"))
        assert check["status"] == "pass", check  # systemd-analyze security <= 2.0
        print(check["name"], check["detail"])
    assert names["django check --deploy"]["status"] == "pass"
    assert names["HSTS"]["status"] == "pass"

    server.ssh("nft delete table inet onebox")  # someone "just opens everything"
    try:
        failed = onebox("audit", cwd=project, check=False)
    finally:
        onebox("setup", cwd=project)
    assert failed.returncode == 1
    assert "FAIL  firewall drops what it does not allow" in failed.stdout
    assert "fix: run `onebox setup`" in failed.stdout
    assert onebox("audit", cwd=project).returncode == 0  # setup put it back


def test_lynis_hardening_index_is_at_least_80_with_no_warnings(secured):
    """Lynis (Debian's package, quick audit), run by `onebox audit --lynis`. Setup also
    installed the security updates that were waiting, which Lynis would warn about."""
    server, project, _ = secured
    onebox("backup", cwd=project)  # the audit fails without one
    report = onebox_json("audit", "--lynis", cwd=project)["result"]
    names = {check["name"]: check for check in report["checks"]}
    lynis = names["lynis hardening index"]
    print(f"Debian {server.debian}: lynis {lynis['detail']}")
    assert lynis["status"] == "pass", lynis  # index >= 80
    assert lynis["detail"].endswith("warnings: none"), lynis
    assert names["no security update waiting"]["status"] == "pass"
    assert server.ssh("stat -c %a $(readlink -f /usr/bin/as)").strip() == "750"
    assert "Storage=none" in server.ssh("systemd-analyze cat-config systemd/coredump.conf")


def test_a_secret_appears_in_no_unit_command_line_journal_or_output(secured):
    """A known secret value, set with `onebox env set` and used by the live app, is in
    the secrets file and nowhere else: not in a unit file, a process's command line, the
    journal, onebox's history, or anything onebox printed."""
    server, project, _ = secured
    canary = "onebox-canary-" + os.urandom(8).hex()
    printed = [onebox("env", "set", "CANARY_TOKEN=-", cwd=project, input=canary + "\n")]
    printed.append(onebox("deploy", cwd=project))
    printed += [onebox(*args, cwd=project) for args in (("env", "list"), ("status",))]
    printed.append(onebox("backup", cwd=project))
    printed.append(onebox("--json", "history", cwd=project))
    printed.append(onebox("--json", "audit", cwd=project, check=False))  # (a warning is fine)
    for result in printed:
        assert canary not in result.stdout + result.stderr, result.args
    # the app has it: systemd read it from the secrets file into the environment
    pid = server.ssh("systemctl show -p MainPID --value onebox-sec@$(readlink /srv/sec/slots/live)")
    assert canary in server.ssh(f"tr '\\0' '\\n' < /proc/{pid.strip()}/environ")
    units = "/etc/systemd /run/systemd/transient /usr/lib/systemd/system"
    assert server.ssh(f"grep -rl {canary} {units} || true").strip() == ""
    assert canary not in server.ssh("ps -eo args")
    assert canary not in server.ssh("journalctl --no-pager -o cat")
    assert server.ssh(f"grep -rl {canary} /var/log /var/lib/onebox || true").strip() == ""
    assert server.ssh(f"grep -l {canary} /etc/onebox/sec.env").strip() == "/etc/onebox/sec.env"
