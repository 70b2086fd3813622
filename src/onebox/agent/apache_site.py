"""Apache kept in front of onebox's releases ([server] proxy = "apache").

mod_wsgi is the part replaced: in the adopted vhost its lines (WSGIScriptAlias,
WSGIDaemonProcess, WSGIProcessGroup, WSGIApplicationGroup) and the Alias lines of the
static and media URLs are commented out with a mark, and one Include brings in onebox's
site file, which passes requests to the live release's Unix socket. A switch of release
re-points that socket (switch.py): Apache is not reloaded for it. Apache's TLS, its
other directives and its other vhosts stay as they are.

Apache's configuration only changes with `apachectl configtest` passing; when it does
not, or the graceful reload fails, both files are put back. The vhost as it was before
onebox first changed it is kept (paths.apache_original): `restore_vhost` is the way back.
"""

from __future__ import annotations

import json
import os
from contextlib import nullcontext
from pathlib import Path

from . import apache_config, lock
from .drain import drained
from .paths import AppPaths
from .plan import Change, command, file_change
from .protocol import AgentError, ExitCode
from .requests import AdoptUndoRequest
from .system import run, tail, write_file

MARK = apache_config.ONEBOX_MARK  # the start of each line onebox commented out
MOD_WSGI = {"wsgiscriptalias", "wsgidaemonprocess", "wsgiprocessgroup", "wsgiapplicationgroup"}
MODULES = ("proxy", "proxy_http", "headers", "rewrite")


def front(paths: AppPaths) -> dict:
    """What setup (and a move) recorded of the proxy in front: {"proxy": ..., "apache":
    {...}, "confirmed": bool} (confirmed: the move off Apache is for good)."""
    try:
        settings = json.loads(paths.settings.read_text())
    except (OSError, ValueError):
        settings = {}
    return {
        "proxy": settings.get("proxy", "caddy"),
        "apache": settings.get("apache") or {},
        "confirmed": bool(settings.get("confirmed")),
    }


def record_front(paths: AppPaths, **fields: object) -> None:
    """The proxy in front as it is now (after a move), beside what setup keeps there."""
    settings = json.loads(paths.settings.read_text())
    write_file(paths.settings, json.dumps({**settings, **fields}, indent=2) + "\n", mode=0o600)


def in_front(paths: AppPaths) -> bool:
    return front(paths)["proxy"] == "apache"


def vhost_file(paths: AppPaths) -> Path:
    """The vhost file itself (sites-enabled/ holds links to sites-available/)."""
    name = front(paths)["apache"].get("vhost", "")
    if not name:
        raise AgentError(f"{paths.app} has no [apache] vhost recorded", hint="run `onebox setup`")
    return Path(os.path.realpath(name))


def url_prefixes(*urls: str) -> set[str]:
    return {"/" + url.strip("/") + "/" for url in urls if url and "://" not in url}


def with_onebox(text: str, include: Path, prefixes: set[str]) -> str:
    """The vhost text with mod_wsgi's lines (and the static/media Alias lines) of each
    vhost that has a WSGIScriptAlias commented out, and onebox's Include added to it."""
    lines = text.splitlines(keepends=True)
    if any(line.strip() == f"Include {include}" for line in lines):
        return text
    hosts = [h for h in apache_config.virtual_hosts_in(text, "") if h.values("wsgiscriptalias")]
    off: set[int] = set()
    ends: set[int] = set()
    for host in hosts:
        ends.add(host.end)
        for d in host.directives:
            alias = d.name == "alias" and d.args and url_prefixes(d.args[0]) & prefixes
            if d.name in MOD_WSGI or alias:
                off.update(range(d.line, d.end + 1))
    out = []
    for number, line in enumerate(lines, 1):
        if number in ends:
            indent = line[: len(line) - len(line.lstrip())] + "    "
            out.append(f"{indent}# onebox serves the site from its releases (see {include.name})\n")
            out.append(f"{indent}Include {include}\n")
        out.append(MARK + line if number in off else line)
    return "".join(out)


def without_onebox(text: str, include: Path) -> str:
    """with_onebox undone: the marked lines back, onebox's Include and note gone."""
    out = []
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped == f"Include {include}" or stripped.startswith("# onebox serves the site"):
            continue
        out.append(line.removeprefix(MARK))
    return "".join(out)


def includes_onebox(paths: AppPaths) -> bool:
    """Whether the vhost passes the site to onebox's releases (not after `adopt --undo`)."""
    try:
        text = vhost_file(paths).read_text()
    except (OSError, AgentError):
        return False
    return any(line.strip() == f"Include {paths.apache_site}" for line in text.splitlines())


def enabled_modules() -> set[str]:
    return {p.name.removesuffix(".load") for p in Path("/etc/apache2/mods-enabled").glob("*.load")}


def is_apache_site(text: str) -> bool:
    """A site file of this module's (an Apache include), not a Caddy site."""
    return any(line.startswith("ProxyPass ") for line in text.splitlines())


def url_prefixes_of(site: str, paths: AppPaths) -> dict[str, str]:
    """The static and media URL prefixes an Apache site file serves (for a Caddy site
    made from it): {"static_url": ..., "media_url": ...}."""
    found = {}
    for line in site.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "Alias":
            if words[2].rstrip("/").endswith(".onebox/static"):
                found["static_url"] = words[1]
            elif words[2].rstrip("/") == str(paths.media):
                found["media_url"] = words[1]
    return found


def wanted(paths: AppPaths, site: str) -> tuple[Path, str, str]:
    """The vhost file, its text now, and its text with onebox's site in it (the Alias
    lines of the URLs onebox's site serves taken out)."""
    vhost = vhost_file(paths)
    old_vhost = vhost.read_text()
    prefixes = url_prefixes(*url_prefixes_of(site, paths).values())
    return vhost, old_vhost, with_onebox(old_vhost, paths.apache_site, prefixes)


def write_vhost(vhost: Path, text: str) -> None:
    write_file(vhost, text, mode=vhost.stat().st_mode & 0o777)  # (its mode kept)


def plan(paths: AppPaths, site: str) -> list[Change]:
    vhost, _, new_vhost = wanted(paths, site)
    changes = file_change(paths.apache_site, site) + file_change(vhost, new_vhost)
    missing = [m for m in MODULES if m not in enabled_modules()]
    if missing:
        changes.append(command(["a2enmod", *missing]))
    if changes:
        changes += [command(["apachectl", "configtest"]), command(["apachectl", "graceful"])]
    return changes


def install(paths: AppPaths, site: str) -> bool:
    """onebox's site file and the vhost's Include, live only if Apache accepts them."""
    vhost, old_vhost, new_vhost = wanted(paths, site)
    old_site = paths.apache_site.read_text() if paths.apache_site.is_file() else None
    missing = [m for m in MODULES if m not in enabled_modules()]
    if new_vhost == old_vhost and site == old_site and not missing:
        return False
    if not paths.apache_original.exists():  # the user's own vhost is never lost
        write_file(paths.apache_original, old_vhost, mode=0o600)
    # Drained first when onebox's include serves already (not for the move off mod_wsgi,
    # whose vhost has no drain switch yet): no kept-alive client meets the reload's close.
    drain = drained(paths) if includes_onebox(paths) else nullcontext()
    write_file(paths.apache_site, site)
    write_vhost(vhost, new_vhost)
    if missing:
        run(["a2enmod", "-q", *missing], what="enabling Apache's proxy modules")
    try:
        with drain:
            check_and_reload(f"onebox's site file {paths.apache_site}")
    except AgentError:
        write_vhost(vhost, old_vhost)
        if old_site is None:
            paths.apache_site.unlink(missing_ok=True)
        else:
            write_file(paths.apache_site, old_site)
        if missing:
            run(["a2dismod", "-q", "-f", *missing], check=False)
        raise
    return True


def restore_vhost(paths: AppPaths) -> bool:
    """The vhost as it was before onebox (the way back to mod_wsgi)."""
    vhost = vhost_file(paths)
    current = vhost.read_text()
    original = without_onebox(current, paths.apache_site)
    if original == current:
        return False
    write_vhost(vhost, original)
    try:
        check_and_reload("the vhost as it was before onebox")
    except AgentError:
        write_vhost(vhost, current)
        raise
    paths.apache_site.unlink(missing_ok=True)
    return True


def undo(request: AdoptUndoRequest) -> dict[str, object]:
    """`onebox adopt --undo`: Apache + mod_wsgi serve the code they served before onebox
    (its releases keep running, unused, until the next deploy moves the site back)."""
    paths = AppPaths(request.app)
    if not in_front(paths):
        raise AgentError(
            f"{paths.app} is not served through Apache here: nothing to undo",
            hint='`onebox adopt --undo` is for a site set up with [server] proxy = "apache"',
            code=ExitCode.CONFIG,
        )
    with lock.deploy_lock(paths.lock, request.by, "adopt --undo"):
        restored = restore_vhost(paths)
    return {"restored": restored, "vhost": str(vhost_file(paths))}


def check_and_reload(what: str) -> None:
    check = run(["apachectl", "configtest"], check=False)
    if check.returncode != 0:
        raise AgentError(
            f"Apache rejected {what}; its previous configuration is kept",
            output=tail(check.stdout + check.stderr),
            hint="if you override onebox's Apache template (.onebox/templates/"
            "site.apache.j2), fix it; `apachectl configtest` names the line",
        )
    run(["systemctl", "reload", "apache2"], what="reloading Apache (graceful)")
