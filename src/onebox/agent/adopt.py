"""What `onebox adopt` reads of a Django site that Apache + mod_wsgi serves, and nothing
more: it changes nothing on the server.

For each vhost with a WSGIScriptAlias: where the code and its virtualenv are (the daemon
process's python-home and python-path), which Python runs it and which one mod_wsgi was
built for, the settings module (from the WSGI script), and, read by running the settings
as mod_wsgi's own user with the site's own virtualenv, the database they name, STATIC_ROOT
and MEDIA_ROOT. The database password is never sent back: only whether a settings file
holds it as written text (world-readable, then) and where.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from . import apache_config
from .apache_config import VirtualHost
from .protocol import AgentError, ExitCode, step
from .requests import AdoptRequest
from .system import run, user_exists

# Run with the site's own Python, as its daemon's user: prints what onebox needs.
SETTINGS_PROBE = r"""
import json, os, sys
sys.path[:0] = [p for p in os.environ["PROBE_PATH"].split(":") if p]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", os.environ["PROBE_SETTINGS"])
sys.argv = ["mod_wsgi"]  # as mod_wsgi has it
import django
from django.conf import settings
django.setup()
out = {"django": django.get_version(), "python": "%d.%d" % sys.version_info[:2]}
dbs = {}
for alias, db in settings.DATABASES.items():
    keys = ("ENGINE", "NAME", "USER", "HOST", "PORT")
    dbs[alias] = {k.lower(): str(db.get(k) or "") for k in keys}
    dbs[alias]["has_password"] = bool(db.get("PASSWORD"))
    if os.environ.get("PROBE_PASSWORD") == "1":
        dbs[alias]["password"] = str(db.get("PASSWORD") or "")
out["databases"] = dbs
for name in ("STATIC_ROOT", "STATIC_URL", "MEDIA_ROOT", "MEDIA_URL"):
    out[name.lower()] = str(getattr(settings, name, "") or "")
module = sys.modules[os.environ["DJANGO_SETTINGS_MODULE"]]
out["settings_file"] = getattr(module, "__file__", "") or ""
name = module.__name__
out["settings_files"] = sorted(
    m.__file__ for n, m in list(sys.modules.items())
    if getattr(m, "__file__", None) and (n == name or n.startswith(name + "."))
)
print("ONEBOX-PROBE" + json.dumps(out))
"""


def inspect(request: AdoptRequest) -> dict[str, Any]:
    if not apache_config.installed():
        raise AgentError(
            "this server runs no Apache (apachectl is not installed)",
            hint="onebox adopt takes over a site Apache + mod_wsgi serves; for a new "
            "server, `onebox setup` then `onebox deploy` set everything up",
            code=ExitCode.UNSUPPORTED,
        )
    with step("read Apache's configuration"):
        files = apache_config.included_files()
        hosts = [host for name in files for host in apache_config.virtual_hosts(Path(name))]
        served = apache_config.served_names()
    sites = [site_facts(host) for host in hosts if host.values("wsgiscriptalias")]
    return {
        "apache": {
            "version": apache_config.version(),
            "active": run(["systemctl", "is-active", "apache2"], check=False).stdout.strip(),
            "files": files,
            "mod_wsgi_python": apache_config.mod_wsgi_python(),
        },
        "vhosts": [host.to_json() for host in hosts],
        "served": served,
        "sites": sites,
        "tls": [tls_facts(host) for host in hosts if host.first("sslcertificatefile")],
    }


def daemon_options(host: VirtualHost, hosts: list[VirtualHost] | None = None) -> dict[str, str]:
    """The WSGIDaemonProcess the vhost's WSGIProcessGroup names: {"name": ..., options}."""
    group = (host.first("wsgiprocessgroup") or [""])[0]
    for args in host.values("wsgidaemonprocess"):
        if args and (not group or args[0] == group):
            options = dict(arg.split("=", 1) for arg in args[1:] if "=" in arg)
            return {"name": args[0], **options}
    return {"name": group} if group else {}


def settings_module(script: Path) -> str:
    """DJANGO_SETTINGS_MODULE as the WSGI script sets it."""
    try:
        text = script.read_text(errors="replace")
    except OSError:
        return ""
    match = re.search(r"DJANGO_SETTINGS_MODULE['\"]\s*[,\]]\s*=?\s*['\"]([\w.]+)['\"]", text)
    return match.group(1) if match else ""


def site_facts(host: VirtualHost) -> dict[str, Any]:
    mount, script = [*host.first("wsgiscriptalias"), "", ""][:2]
    daemon = daemon_options(host)
    python_path = [p for p in daemon.get("python-path", "").split(":") if p]
    code = Path(python_path[0]) if python_path else Path(script).parent.parent
    venv = daemon.get("python-home", "")
    user = daemon.get("user", "www-data")
    facts: dict[str, Any] = {
        "vhost": {"file": os.path.realpath(host.file), "line": host.line, "address": host.address},
        "names": host.names,
        "mount": mount,
        "script": script,
        "daemon": daemon,
        "mode": "daemon" if daemon else "embedded",
        "code": str(code),
        "venv": venv,
        "python_path": python_path,
        "user": user,
        "settings": settings_module(Path(script)),
        "aliases": [args[:2] for args in host.values("alias") if len(args) >= 2],
        "setenv": {args[0]: (args[1] if len(args) > 1 else "") for args in host.values("setenv")},
        "problems": [],
    }
    with step(f"read the settings of {script}"):
        probed = probe_settings(facts, password=True)
    facts["password_in"] = password_files(probed)
    for db in probed.get("databases", {}).values():
        db.pop("password", None)  # compared with the settings files here, never sent back
    facts["django"] = probed
    facts["argv"] = argv_uses(probed.get("settings_files", []))
    return facts


def probe_settings(site: dict[str, Any], password: bool = False) -> dict[str, Any]:
    """The settings as the site's own Python and user see them; {} (with a problem noted)
    when they cannot be read."""
    python = Path(site["venv"]) / "bin" / "python" if site["venv"] else Path("/usr/bin/python3")
    if not python.exists():
        site["problems"].append(f"python-home {site['venv']} has no bin/python")
        return {}
    user = site["user"] if user_exists(site["user"]) else "www-data"
    env = {
        "PROBE_PATH": ":".join(site["python_path"] or [site["code"]]),
        "PROBE_SETTINGS": site["settings"] or "settings",
        "PROBE_PASSWORD": "1" if password else "0",
    }
    result = run(
        [str(python), "-c", SETTINGS_PROBE],
        env=env,
        cwd=Path(site["code"]),
        user=user,
        check=False,
        timeout=120,
    )
    lines = result.stdout.splitlines()
    marker = next((line for line in lines if line.startswith("ONEBOX-PROBE")), "")
    if not marker:
        lines = (result.stderr or result.stdout).strip().splitlines()
        site["problems"].append(
            "the settings could not be read with the site's own Python as "
            f"{user}: {lines[-1] if lines else 'no output'}"
        )
        return {}
    return json.loads(marker.removeprefix("ONEBOX-PROBE"))


def password_files(probed: dict[str, Any]) -> list[dict[str, Any]]:
    """The settings files that hold a database password (read with `password`) as
    written text."""
    secrets = {db.get("password") for db in probed.get("databases", {}).values()} - {"", None}
    if not secrets:
        return []
    found = []
    for name in probed.get("settings_files", []):
        try:
            text = Path(name).read_text(errors="replace")
            mode = stat.S_IMODE(os.stat(name).st_mode)
        except OSError:
            continue
        if any(secret in text for secret in secrets):
            found.append({"file": name, "mode": f"{mode:04o}", "world_readable": bool(mode & 4)})
    return found


def argv_uses(files: list[str]) -> list[dict[str, Any]]:
    """Lines of the settings that index sys.argv: under mod_wsgi it is ['mod_wsgi']."""
    found = []
    for name in files:
        try:
            lines = Path(name).read_text(errors="replace").splitlines()
        except OSError:
            continue
        for number, line in enumerate(lines, 1):
            if re.search(r"sys\.argv\s*\[\s*[1-9]", line) and not line.lstrip().startswith("#"):
                found.append({"file": name, "line": number, "text": line.strip()})
    return found


def tls_facts(host: VirtualHost) -> dict[str, Any]:
    cert = host.first("sslcertificatefile")[0]
    key = (host.first("sslcertificatekeyfile") or [""])[0]
    out = run(
        ["openssl", "x509", "-in", cert, "-noout", "-subject", "-enddate", "-issuer"],
        check=False,
    ).stdout
    fields = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return {
        "file": os.path.realpath(host.file),
        "line": host.line,
        "names": host.names,
        "cert": cert,
        "key": key,
        "subject": fields.get("subject", "").strip(),
        "issuer": fields.get("issuer", "").strip(),
        "expires": fields.get("notAfter", "").strip(),
    }
