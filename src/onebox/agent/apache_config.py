"""Reading an Apache 2.4 configuration as Apache itself resolves it.

`apachectl -t -D DUMP_INCLUDES` names every file Apache reads, in order; `apachectl -S`
which virtual host answers which name on which port, and where each is defined. The
vhost blocks of those files are then read for what a Django site under mod_wsgi uses:
WSGIScriptAlias, WSGIDaemonProcess (python-home, python-path, user), WSGIProcessGroup,
Alias, SetEnv, the TLS certificate. Read only: nothing here changes the server.
"""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .protocol import AgentError, ExitCode
from .system import run

ONEBOX_MARK = "#onebox# "  # apache_site.MARK: a line onebox commented out

# The directives a Django site's vhost is read for (Apache's names are case-insensitive).
READ = {
    "servername",
    "serveralias",
    "documentroot",
    "wsgiscriptalias",
    "wsgidaemonprocess",
    "wsgiprocessgroup",
    "wsgiapplicationgroup",
    "wsgipythonhome",
    "wsgipythonpath",
    "alias",
    "setenv",
    "sslengine",
    "sslcertificatefile",
    "sslcertificatekeyfile",
    "sslcertificatechainfile",
    "redirect",
    "include",
    "includeoptional",
}


@dataclass
class Directive:
    name: str  # lower case
    args: list[str]
    line: int  # where it starts in its file (1-based)
    end: int  # its last line (continuations)


@dataclass
class VirtualHost:
    file: str
    line: int
    end: int
    address: str  # "*:443"
    directives: list[Directive] = field(default_factory=list)

    @property
    def port(self) -> int:
        tail = self.address.rsplit(":", 1)[-1]
        return int(tail) if tail.isdigit() else 80

    def values(self, name: str) -> list[list[str]]:
        return [d.args for d in self.directives if d.name == name]

    def first(self, name: str) -> list[str]:
        found = self.values(name)
        return found[0] if found else []

    @property
    def names(self) -> list[str]:
        names = [args[0] for args in self.values("servername") if args]
        return names + [a for args in self.values("serveralias") for a in args]

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "end": self.end,
            "address": self.address,
            "port": self.port,
            "names": self.names,
            "directives": [asdict(d) for d in self.directives],
        }


def logical_lines(text: str) -> list[tuple[int, int, str]]:
    """(first line, last line, text) of each line, continuations (`\\`) joined."""
    out: list[tuple[int, int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        # a line onebox commented out (apache_site.MARK) still tells what the site was
        line = raw.removeprefix(ONEBOX_MARK).rstrip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append((start, number, (pending + line).strip()))
        pending = ""
    if pending:
        out.append((start, start, pending.strip()))
    return out


def split_args(text: str) -> list[str]:
    try:
        return shlex.split(text, posix=True)
    except ValueError:  # an unbalanced quote: Apache's own configtest would say so
        return text.split()


def virtual_hosts(path: Path) -> list[VirtualHost]:
    """The <VirtualHost> blocks of one file, with the directives this module reads."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return virtual_hosts_in(text, str(path))


def virtual_hosts_in(text: str, name: str) -> list[VirtualHost]:
    hosts: list[VirtualHost] = []
    current: VirtualHost | None = None
    for start, end, line in logical_lines(text):
        if not line or line.startswith("#"):
            continue
        opening = re.match(r"<VirtualHost\s+([^>]+)>", line, re.IGNORECASE)
        if opening:
            current = VirtualHost(name, start, end, opening.group(1).split()[0])
            continue
        if re.match(r"</VirtualHost\s*>", line, re.IGNORECASE) and current:
            current.end = end
            hosts.append(current)
            current = None
            continue
        if current is None or line.startswith("<"):
            continue
        directive, _, rest = line.partition(" ")
        if directive.lower() in READ:
            current.directives.append(Directive(directive.lower(), split_args(rest), start, end))
    return hosts


def included_files() -> list[str]:
    """Every file Apache reads, as its own dump lists them."""
    result = run(["apachectl", "-t", "-D", "DUMP_INCLUDES"], check=False)
    files = []
    for line in result.stdout.splitlines():
        match = re.match(r"\s*\(\*?\d*\)\s+(\S+)", line)
        if match:
            files.append(match.group(1))
    if result.returncode != 0 and not files:
        raise AgentError(
            "Apache's configuration does not pass its own check (apachectl -t)",
            output=(result.stderr or result.stdout)[-2000:],
            hint="fix it first (`apachectl configtest` names the line), then run onebox again",
            code=ExitCode.CONFIG,
        )
    return files


def served_names() -> list[dict[str, Any]]:
    """`apachectl -S`: which vhost answers which name on which port, as Apache sees it."""
    return parse_served(run(["apachectl", "-S"], check=False).stdout)


def parse_served(text: str) -> list[dict[str, Any]]:
    out = []
    port = ""
    for line in text.splitlines():
        header = re.match(r"^(\S+:\d+)\s+is a NameVirtualHost", line)
        if header:
            port = header.group(1)
            continue
        entry = re.search(
            r"(?:default server|port \d+ namevhost)\s+(\S+)\s+\(([^:]+):(\d+)\)", line
        )
        if entry:
            out.append(
                {
                    "address": port,
                    "name": entry.group(1),
                    "file": entry.group(2),
                    "line": int(entry.group(3)),
                }
            )
        single = re.match(r"^(\S+:\d+)\s+(\S+)\s+\(([^:]+):(\d+)\)", line)
        if single:
            out.append(
                {
                    "address": single.group(1),
                    "name": single.group(2),
                    "file": single.group(3),
                    "line": int(single.group(4)),
                }
            )
    return out


def other_sites(served: list[dict[str, Any]], ours: set[str]) -> list[str]:
    """What Apache answers for besides the names `ours` (served_names' entries), each
    with where it is defined."""
    return sorted(
        {
            f"{entry['name']} ({entry['address']}, {entry['file']}:{entry['line']})"
            for entry in served
            if entry["name"] not in ours
        }
    )


def version() -> str:
    result = run(["apache2", "-v"], check=False)
    match = re.search(r"Apache/(\S+)", result.stdout)
    return match.group(1) if match else ""


def mod_wsgi_python() -> str:
    """The Python mod_wsgi was built for (one per build): read from what it links."""
    for module in sorted(Path("/usr/lib/apache2/modules").glob("mod_wsgi*.so")):
        linked = run(["ldd", str(module)], check=False).stdout
        match = re.search(r"libpython(\d+\.\d+)", linked)
        if match:
            return match.group(1)
    return ""


def installed() -> bool:
    return shutil.which("apachectl") is not None
