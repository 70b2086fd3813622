"""The server's firewall: nftables, default drop on input, IPv4 and IPv6.

onebox owns one table, `inet onebox`, in /etc/onebox/firewall.nft, included from Debian's
/etc/nftables.conf (so nftables.service loads it at boot). Open: SSH (every port sshd
listens on), HTTP, HTTPS (TCP, and UDP for HTTP/3), plus `[security] open_ports`; on a
database host ([servers] db) no HTTP, and the database's port from the app hosts' addresses
only. Everything else arriving from outside is dropped, the database ports included (they
listen on localhost too). Outgoing traffic and replies are untouched.

The rules are checked (`nft -c`) before they are loaded, and loaded with a guard armed
(agent/guard.py): unless a new SSH connection confirms them, the previous ruleset comes
back by itself.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from . import guard
from .paths import FIREWALL_RULES, FIREWALL_WISHES
from .plan import Change, command, enable_changes, file_change
from .protocol import AgentError
from .system import ensure_dir, run, write_file

RULES = FIREWALL_RULES
NFTABLES_CONF = Path("/etc/nftables.conf")
# A glob: nft skips it when no file matches (after the guard's undo removed ours).
INCLUDE = f'include "{RULES.parent}/firewall*.nft"'
TABLE = "inet onebox"

TEMPLATE = """\
# The server's firewall, written by `onebox setup` (onebox owns the table inet onebox).
# Change what it opens with [security] open_ports in onebox.toml, not here.
table inet onebox
delete table inet onebox
table inet onebox {{
	chain input {{
		type filter hook input priority filter - 10; policy drop;
		ct state established,related accept
		ct state invalid drop
		iif "lo" accept
		meta l4proto {{ 1, 58 }} accept comment "icmp, ipv6-icmp (path MTU, neighbour discovery)"
		tcp dport {{ {tcp} }} accept comment "{what}"
{more}	}}
}}
"""


WANTS = FIREWALL_WISHES  # per app: {"firewall": bool, "open_ports": [...]}


def configure(app: str, security: dict) -> tuple[bool, bool]:
    """This app's wish, then the server's firewall from every app's: on if any wants it,
    open what any opens. (changed, guard armed)"""
    ensure_dir(WANTS, mode=0o700)
    wish = wish_of(security)
    write_file(WANTS / f"{app}.json", json.dumps(wish), mode=0o600)
    wishes = [json.loads(p.read_text()) for p in sorted(WANTS.glob("*.json"))]
    if not any(w.get("firewall") for w in wishes):
        return remove(), False
    return ensure(ruleset(wishes))


def wish_of(security: dict) -> dict[str, object]:
    """This app's part in the server's firewall: on or not, the ports it opens, whether
    it serves the web here (not on a database host), and the ports it opens to some
    addresses only ({"5432": ["10.0.0.11"]})."""
    return {
        "firewall": "firewall" not in security.get("skip", {}),
        "open_ports": sorted(set(security.get("open_ports", []))),
        "web": security.get("web", True),
        "allow": security.get("allow", {}),
    }


def plan(app: str, security: dict) -> list[Change]:
    """What configure would change (the wishes of the other apps as they are)."""
    wish = wish_of(security)
    changes = file_change(WANTS / f"{app}.json", json.dumps(wish), mode=0o600)
    others = [json.loads(p.read_text()) for p in sorted(WANTS.glob("*.json")) if p.stem != app]
    wishes = [*others, wish]
    if not any(w.get("firewall") for w in wishes):
        return changes + (
            [Change("file", str(RULES), "removed")] if RULES.exists() or active() else []
        )
    wanted = ruleset(wishes)
    rules = file_change(RULES, wanted, mode=0o644)
    if not rules and not active():
        rules = [command(["nft", "-f", str(RULES)])]
    text = NFTABLES_CONF.read_text() if NFTABLES_CONF.exists() else ""
    boot = [] if INCLUDE in text else [Change("file", str(NFTABLES_CONF), f"+ {INCLUDE}")]
    return changes + rules + boot + enable_changes(["nftables"], now=False)


def ssh_ports() -> list[int]:
    """Every port sshd listens on, from its effective configuration."""
    out = run(["sshd", "-T"], check=False).stdout
    ports = [int(m) for m in re.findall(r"^port (\d+)$", out, re.MULTILINE)]
    return ports or [22]


def ruleset(wishes: list[dict], ssh: list[int] | None = None) -> str:
    """The rules for every app's wish (those with the firewall on)."""
    wishes = [w for w in wishes if w.get("firewall")]
    web = any(w.get("web", True) for w in wishes)  # (an older wish: a web app)
    opened = {port for w in wishes for port in w["open_ports"]}
    tcp = sorted({*(ssh_ports() if ssh is None else ssh), *((80, 443) if web else ()), *opened})
    what = "ssh, http, https and [security] open_ports" if web else "ssh and [security] open_ports"
    more = '\t\tudp dport { 443 } accept comment "http/3"\n' if web else ""
    allowed: dict[int, set[str]] = {}
    for wish in wishes:
        for port, sources in wish.get("allow", {}).items():
            allowed.setdefault(int(port), set()).update(sources)
    for port, sources in sorted(allowed.items()):
        for family in ("ip", "ip6"):
            some = sorted(s for s in sources if (":" in s) == (family == "ip6"))
            if some:
                more += (
                    f"\t\t{family} saddr {{ {', '.join(some)} }} tcp dport {port} accept "
                    'comment "the app hosts only"\n'
                )
    return TEMPLATE.format(tcp=", ".join(map(str, tcp)), what=what, more=more)


def active() -> bool:
    return run(["nft", "list", "table", "inet", "onebox"], check=False).returncode == 0


def ensure(wanted: str) -> tuple[bool, bool]:
    """Write and load the rules; (changed, guard armed)."""
    if RULES.exists() and RULES.read_text() == wanted and active():
        ensure_boot_include()
        return False, False
    check = run(["nft", "-c", "-f", "-"], input=wanted, check=False)
    if check.returncode != 0:
        raise AgentError(
            "the firewall rules do not load; nothing was changed",
            output=check.stderr,
            hint="check [security] open_ports in onebox.toml",
        )
    previous = RULES.read_text() if RULES.exists() and active() else None
    guard.arm("firewall", undo_script(previous))
    write_file(RULES, wanted, mode=0o644)
    loaded = run(["nft", "-f", str(RULES)], check=False)
    if loaded.returncode != 0:
        guard.disarm("firewall")
        run(["sh", "-c", undo_script(previous)], check=False)
        raise AgentError(
            "loading the firewall rules failed; the previous ones are back",
            output=loaded.stderr,
        )
    ensure_boot_include()
    return True, True


def undo_script(previous: str | None) -> str:
    """Put back the previous rules (or none of onebox's), now and at the next boot."""
    if previous is None:
        return f"rm -f {RULES}\nnft delete table {TABLE} 2>/dev/null\n"
    return f"cat > {RULES} <<'ONEBOX_RULES'\n{previous}ONEBOX_RULES\nnft -f {RULES}\n"


def ensure_boot_include() -> bool:
    """nftables.service loads /etc/nftables.conf at boot: make it include onebox's table."""
    text = NFTABLES_CONF.read_text() if NFTABLES_CONF.exists() else "#!/usr/sbin/nft -f\n"
    changed = False
    if INCLUDE not in text:
        text = text.rstrip("\n") + f"\n\n# onebox's firewall (onebox setup)\n{INCLUDE}\n"
        changed = write_file(NFTABLES_CONF, text, mode=0o755)
    enabled = run(["systemctl", "is-enabled", "nftables"], check=False).stdout.strip()
    if enabled != "enabled":
        run(["systemctl", "enable", "--quiet", "nftables"], check=False)
        changed = True
    return changed


def remove() -> bool:
    """[security] skip firewall: take onebox's table away (the user's own rules stay)."""
    existed = RULES.exists() or active()
    RULES.unlink(missing_ok=True)
    run(["nft", "delete", "table", "inet", "onebox"], check=False)
    return existed
