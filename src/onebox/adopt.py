"""`onebox adopt`: take over a Django site that Apache + mod_wsgi serves.

The server is only read (agent/adopt.py): its vhosts as Apache resolves them, the WSGI
daemon's code, virtualenv and user, the settings as that Python reads them. With the
local project (detect.py, as `onebox init`), that makes an onebox.toml that keeps Apache
in front ([server] proxy = "apache"), uses the database the settings already name, and
lists what it found that needs the user: mod_wsgi's traps, a password in a readable
settings file, paths onebox cannot serve. The next commands (`onebox setup`, `onebox
deploy`) do the changing, each with its --dry-run.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit

from onebox import remote
from onebox.agent.adopt import argv_uses
from onebox.agent.apache_config import other_sites
from onebox.agent.requests import AdoptRequest, AdoptUndoRequest, ProxyMoveRequest
from onebox.api.server import (
    Reporter,
    Result,
    _simple,
    connect,
    rendered_files,
    resolve_target,
)
from onebox.config import CONFIG_FILE, Project, load_project, set_config_value
from onebox.config.sections import ENV_NAME
from onebox.detect import Detected, detect
from onebox.errors import ConfigError, ProjectError
from onebox.init import check_options, write_checked
from onebox.templating import render
from onebox.transport import SSH

SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|KEY|CREDENTIAL|DSN", re.IGNORECASE)
APP_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")


@dataclass
class Finding:
    """Something the user should know or do; `level`: "fix" (deploy would fail or
    break), "change" (offered: better, not forced) or "note"."""

    level: str
    text: str
    fix: str = ""


@dataclass
class Adoption:
    config: Path
    site: dict[str, Any]
    apache: dict[str, Any]
    findings: list[Finding] = field(default_factory=list)
    other_sites: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "config": str(self.config),
            "site": self.site,
            "apache": self.apache,
            "findings": [vars(f) for f in self.findings],
            "other_sites": self.other_sites,
        }


def adopt(
    root: Path,
    host: str,
    reporter: Reporter,
    *,
    settings: str | None = None,
    force: bool = False,
    write: bool = True,
) -> Adoption:
    check_options(host=host)
    detected = detect(root, settings)
    target_file = detected.root / CONFIG_FILE
    if target_file.exists() and not force and write:
        raise ConfigError(
            f"{target_file} exists already",
            hint="adopt writes it anew: run it with --force (your file is replaced), or "
            "with --dry-run to see what it would write",
        )
    ssh = SSH(resolve_target(host, known_project(target_file)), on_notice=reporter.notice)
    try:
        facts = remote.call(ssh, remote.pack(AdoptRequest()), reporter.event)
    finally:
        ssh.close()
    site = choose_site(facts, detected, host)
    adoption = Adoption(config=target_file, site=site, apache=facts["apache"])
    adoption.findings = findings(site, facts, detected)
    adoption.other_sites = other_sites(facts.get("served", []), set(site["names"]))
    text = config_text(detected, site, host)
    if write:
        write_checked(target_file, text)
    return adoption


def switch(project: Project, host: str | None, reporter: Reporter, to: str) -> Result:
    """The adopted site off Apache onto Caddy (`to` "caddy"), back ("apache"), or the
    move confirmed ("confirm"); onebox.toml's [server] proxy follows."""
    cfg = project.config
    with connect(project, host, reporter) as server:
        files: dict[str, str] = {}
        if to == "caddy":
            for ports in ("moving", "normal"):
                rendered = rendered_files(project, server.address, ports=ports, proxy="caddy")
                files[f"caddyfile_{ports}"] = rendered["caddyfile"]
                files[f"site_{ports}"] = rendered["site"]
        request = ProxyMoveRequest(
            app=cfg.app.name,
            to=to,
            address=server.address,
            health_path=cfg.app.health_check_path,
            files=files,
            cert=cfg.apache.cert,
            key=cfg.apache.key,
        )
        result = remote.call(server.ssh, remote.pack(request), reporter.event)
    if to in ("caddy", "apache"):
        set_config_value(project.source, "server", "proxy", to)
    return {"host": server.ssh.target.name, "config": str(project.source), **result}


def undo(project: Project, host: str | None, reporter: Reporter) -> Result:
    """The adopted vhost as it was: mod_wsgi serves the code it served before onebox."""
    return _simple(project, host, reporter, AdoptUndoRequest())


def known_project(config: Path) -> Project | None:
    """The project as an earlier adopt wrote it (its [server] user: after setup, root may
    no longer log in), or None."""
    if not config.exists():
        return None
    try:
        return load_project(config.parent)
    except ConfigError:
        return None


def choose_site(facts: dict[str, Any], detected: Detected, host: str) -> dict[str, Any]:
    """The WSGI site of this project (its settings module), of those Apache serves."""
    sites = facts["sites"]
    if not sites:
        served = ", ".join(sorted({n for v in facts["vhosts"] for n in v["names"]})) or "none"
        raise ProjectError(
            f"Apache on {host} serves no WSGI application (no WSGIScriptAlias in the files "
            f"`apachectl -t -D DUMP_INCLUDES` lists; vhosts: {served})",
            hint="adopt takes over a Django site that mod_wsgi serves; for a new site use "
            "`onebox init`, then `onebox setup` and `onebox deploy`",
        )
    ours = [s for s in sites if s["settings"] == detected.settings] or sites
    if len({s["code"] for s in ours}) > 1:
        listed = "; ".join(f"{s['code']} ({s['settings'] or '?'})" for s in ours)
        raise ProjectError(
            f"Apache on {host} serves several WSGI applications: {listed}",
            hint="run adopt with --settings naming this project's settings module",
        )
    # the TLS vhost of the site, if it has one (the one visitors end up on)
    site = sorted(ours, key=lambda s: s["vhost"]["address"].endswith(":443"))[-1]
    where = (site["vhost"]["file"], site["vhost"]["line"])
    site["tls"] = next((t for t in facts.get("tls", []) if (t["file"], t["line"]) == where), {})
    return site


def app_name(site: dict[str, Any], detected: Detected) -> str:
    for candidate in (site["daemon"].get("name", ""), Path(site["code"]).name, detected.name):
        name = candidate.lower().replace("_", "-")
        if APP_NAME.fullmatch(name):
            return name
    return detected.name


def database_url(site: dict[str, Any]) -> str:
    db = (site.get("django") or {}).get("databases", {}).get("default") or {}
    if "mysql" not in db.get("engine", "") or not db.get("name") or not db.get("user"):
        return ""
    host = db.get("host") or "localhost"
    if host.startswith("/"):  # a socket path: the local server
        host = "localhost"
    port = f":{db['port']}" if db.get("port") else ""
    return f"mysql://{db['user']}@{host}{port}/{db['name']}"


def config_text(detected: Detected, site: dict[str, Any], host: str) -> str:
    domain = next((n for n in site["names"] if "." in n and "*" not in n), "")
    detected.name = app_name(site, detected)
    document = tomlkit.parse(render("onebox.toml.j2", d=detected, host=host, domain=domain))
    document["server"]["proxy"] = "apache"
    url = database_url(site)
    if url:
        database = document["database"]
        database["engine"] = "mysql"
        database["url"] = url
        database["url"].comment(
            "the database the settings name; setup keeps its password in the secrets"
        )
    env = document["env"]
    plain = {k: v for k, v in site["setenv"].items() if ENV_NAME.fullmatch(k)}
    secret = sorted(k for k in plain if SECRET_NAME.search(k))
    variables = tomlkit.inline_table()
    variables.update({k: v for k, v in plain.items() if k not in secret})
    env["vars"] = variables
    env["secrets"] = sorted({*env.get("secrets", []), *secret})
    apache = tomlkit.table()
    apache.add(tomlkit.comment("The site Apache + mod_wsgi served (read by `onebox adopt`)."))
    apache.add(tomlkit.comment("deploy comments out its mod_wsgi lines in `vhost` (the original"))
    apache.add(tomlkit.comment("is kept) and serves onebox's releases through Apache instead."))
    apache["vhost"] = site["vhost"]["file"]
    apache["code"] = site["code"]
    apache["venv"] = site["venv"]
    apache["settings"] = site["settings"]
    apache["user"] = site["user"]
    tls = site.get("tls") or {}
    if tls.get("cert") and tls.get("key"):
        apache["cert"] = tls["cert"]
        apache["key"] = tls["key"]
    document["apache"] = apache
    return tomlkit.dumps(document)


def inside(path: str, folder: str) -> bool:
    return bool(path) and os.path.commonpath([path, folder]) == folder


def findings(site: dict[str, Any], facts: dict[str, Any], detected: Detected) -> list[Finding]:
    out = [Finding("fix", problem) for problem in site.get("problems", [])]
    django = site.get("django") or {}
    out += argv_findings(site["argv"] + local_argv_uses(detected))
    wsgi_python, venv_python = facts["apache"].get("mod_wsgi_python"), django.get("python")
    if wsgi_python and venv_python and wsgi_python != venv_python:
        out.append(
            Finding(
                "note",
                f"mod_wsgi here is built for Python {wsgi_python} (one Python per mod_wsgi "
                f"build), the site's virtualenv {site['venv']} is Python {venv_python}: "
                "under mod_wsgi its compiled packages cannot load",
                "onebox runs the app with gunicorn in a virtualenv of the release's own "
                "Python ([server] python picks another one): the mismatch ends at the "
                "first deploy",
            )
        )
    if site["setenv"]:
        out.append(
            Finding(
                "note",
                f"SetEnv {', '.join(site['setenv'])}: mod_wsgi puts these into the WSGI "
                "request environ, not os.environ, so settings never saw them",
                "they are [env] vars (or secrets, by their names) in onebox.toml now, in "
                "os.environ of every process",
            )
        )
    for found in site.get("password_in", []):
        readable = " (world-readable)" if found["world_readable"] else ""
        out.append(
            Finding(
                "change",
                f"{found['file']}{readable} holds the database password as written text",
                "setup copies it into the server's 0600 secrets file as DATABASE_PASSWORD; "
                'then the settings can read it: "PASSWORD": os.environ["DATABASE_PASSWORD"] '
                "(and the password leaves the code)",
            )
        )
    static_root, media_root = django.get("static_root", ""), django.get("media_root", "")
    if static_root and not inside(static_root, site["code"]):
        out.append(
            Finding(
                "fix",
                f"STATIC_ROOT is {static_root}, outside the code ({site['code']}): onebox "
                "collects each release's static files into the release",
                'STATIC_ROOT = os.path.join(BASE_DIR, "static") (inside the project)',
            )
        )
    if media_root and not inside(media_root, site["code"]):
        out.append(
            Finding(
                "fix",
                f"MEDIA_ROOT is {media_root}, outside the code: onebox keeps uploads in "
                "its shared media folder",
                'MEDIA_ROOT = os.environ.get("MEDIA_ROOT", os.path.join(BASE_DIR, "media")) '
                "(onebox sets MEDIA_ROOT)",
            )
        )
    elif media_root:
        out.append(
            Finding(
                "note",
                f"uploads in {media_root} are copied into onebox's shared media folder by "
                "setup (the originals stay), and backed up from there",
            )
        )
    if not database_url(site):
        engine = (django.get("databases", {}).get("default") or {}).get("engine", "unknown")
        out.append(
            Finding(
                "note",
                f"the settings' database ({engine}) is not MySQL/MariaDB: [database] is as "
                "`onebox init` detects it; check it before `onebox setup`",
            )
        )
    if site["mode"] != "daemon":
        out.append(Finding("note", "mod_wsgi runs the site in embedded mode (no daemon)"))
    return out


def argv_findings(uses: list[dict[str, Any]]) -> list[Finding]:
    seen, out = set(), []
    for use in uses:
        key = (Path(use["file"]).name, use["line"])
        if key in seen:
            continue
        seen.add(key)
        out.append(
            Finding(
                "fix",
                f"{use['file']}:{use['line']} reads sys.argv ({use['text']}): under mod_wsgi "
                "sys.argv is ['mod_wsgi'] (IndexError), under gunicorn it holds gunicorn's "
                "options",
                "test the command another way: len(sys.argv) > 1 and sys.argv[1] == "
                '"test", or an environment variable',
            )
        )
    return out


def local_argv_uses(detected: Detected) -> list[dict[str, Any]]:
    """The server's check (agent/adopt.argv_uses) on the local settings module (or
    package), its files named from the project's root."""
    module = detected.root / Path(*detected.settings.split("."))
    files = [module.with_suffix(".py")] if module.with_suffix(".py").is_file() else []
    files += sorted(module.glob("*.py")) if module.is_dir() else []
    uses = argv_uses([str(path) for path in files])
    return [{**use, "file": str(Path(use["file"]).relative_to(detected.root))} for use in uses]
