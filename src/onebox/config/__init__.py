"""onebox.toml: the typed configuration (sections.py, background.py), its loading,
its error messages, and the edits onebox makes to it.

Validation errors name the file, the line, the key and what is expected; unknown keys
are errors with a did-you-mean, because a typo silently ignored is a production outage.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import tomlkit
from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    field_validator,
    model_validator,
)

from onebox.config.background import (
    PROCESS_NAME,
    RESERVED_NAMES,
    ProcessConfig,
    ScheduleConfig,
    ServicesConfig,
    _background_names,
    split_command,
)
from onebox.config.sections import (
    CONFIG_FILE,
    ApacheConfig,
    AppConfig,
    BackupConfig,
    BuildConfig,
    DatabaseConfig,
    DeployConfig,
    EnvConfig,
    MediaConfig,
    SecurityConfig,
    ServerConfig,
    ServersConfig,
    _no_control_characters,
    _Section,
)
from onebox.errors import ConfigError

__all__ = [
    "CONFIG_FILE", "PROCESS_NAME", "RESERVED_NAMES", "AppConfig", "Config", "ProcessConfig",
    "Project", "ServerConfig", "find_config", "load_config", "load_project", "locate",
    "set_config_value", "set_server_user", "split_command", "with_procfile",
]  # fmt: skip


class Config(_Section):
    app: AppConfig
    server: ServerConfig = ServerConfig()
    servers: ServersConfig = ServersConfig()
    build: BuildConfig = BuildConfig()
    deploy: DeployConfig = DeployConfig()
    env: EnvConfig = EnvConfig()
    database: DatabaseConfig = DatabaseConfig()
    media: MediaConfig = MediaConfig()
    backup: BackupConfig = BackupConfig()
    security: SecurityConfig = SecurityConfig()
    apache: ApacheConfig = ApacheConfig()
    # name = "command", or name = { command = "...", replicas = 2, stop_timeout = 60 }
    processes: dict[str, ProcessConfig] = {}
    # name = { command = "python manage.py clearsessions", when = "daily" }
    schedule: dict[str, ScheduleConfig] = {}
    services: ServicesConfig = ServicesConfig()

    @property
    def redis(self) -> dict[str, object] | None:
        """[services] redis as the server gets it, its role settled, or None."""
        redis = self.services.redis_config
        if redis is None:
            return None
        celery = any(Path(p.argv[0]).name == "celery" for p in self.processes.values())
        role = redis.role or ("broker" if celery else "cache")
        return {**redis.model_dump(), "role": role, "celery": celery}

    @field_validator("processes", mode="before")
    @classmethod
    def _processes(cls, value: Any) -> Any:
        if isinstance(value, dict):
            _background_names(value, "process")
            return {k: {"command": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("schedule")
    @classmethod
    def _schedules(cls, value: dict[str, ScheduleConfig]) -> dict[str, ScheduleConfig]:
        return _background_names(value, "schedule")

    @model_validator(mode="after")
    def _one_name_each(self) -> Config:
        both = sorted(set(self.processes) & set(self.schedule))
        if both:
            raise ValueError(
                f"{both[0]!r} is both a process and a schedule: give them different names"
            )
        return self

    @model_validator(mode="after")
    def _apache_needs_its_vhost(self) -> Config:
        if self.server.proxy == "apache" and not self.apache.vhost:
            raise ValueError(
                '[server] proxy = "apache" keeps Apache in front: [apache] vhost names the '
                "vhost file onebox serves the site through (`onebox adopt` writes it)"
            )
        return self

    @property
    def web_hosts(self) -> list[str]:
        """The hosts the app serves from: [servers] web, else [server] host."""
        return self.servers.web or [self.server.host]

    @property
    def app_hosts(self) -> list[str]:
        """Every host with the app's release: the web hosts, then the worker hosts."""
        return [*self.web_hosts, *self.servers.worker]

    @property
    def background_host(self) -> str:
        """Where [processes] and [schedule] run: the first worker host, else the first
        web host (once: one Celery beat, one run of each schedule)."""
        return (self.servers.worker or self.web_hosts)[0]

    @model_validator(mode="after")
    def _roles(self) -> Config:
        servers = self.servers
        if servers.web and self.server.host and self.server.host not in servers.web:
            raise ValueError(
                f"[server] host {self.server.host!r} is not one of [servers] web: leave host "
                "out (the first web host is the default for other commands), or add it to web"
            )
        lb = servers.lb
        if set(servers.worker) & {*self.web_hosts, lb, servers.db}:
            raise ValueError(
                "[servers] worker names a host that has another role: the worker hosts run "
                "the app's [processes] and [schedule] apart from the web hosts"
            )
        if servers.worker and self.database.engine == "sqlite":
            raise ValueError(
                "a worker host shares the web hosts' database, and SQLite is a file on one "
                'host: set [database] engine = "postgresql" and [servers] db (or [database] url)'
            )
        if lb and (lb in self.web_hosts or lb == servers.db):  # (db's own check: below)
            raise ValueError(
                "[servers] gives one host two roles: the web hosts, the load balancer and "
                "the database host are separate servers"
            )
        several = len(self.web_hosts) > 1
        if several and self.database.engine == "sqlite":
            raise ValueError(
                "several web hosts share one database, and SQLite is a file on one of them: "
                'set [database] engine = "postgresql" and [servers] db (or [database] url)'
            )
        if several and not servers.lb:
            raise ValueError(
                "several web hosts need a load balancer in front of them: set [servers] lb "
                '(a host onebox sets up, or "external" for your provider\'s)'
            )
        if servers.lb == "external" and not self.server.domain:
            raise ValueError(
                'lb = "external": [server] domain names the site (the name your load '
                "balancer answers to, which the app allows)"
            )
        return self

    @model_validator(mode="after")
    def _database_host(self) -> Config:
        db = self.servers.db
        if not db:
            return self
        if self.database.engine != "postgresql":
            raise ValueError(
                "[servers] db sets up PostgreSQL on its own host: set [database] engine = "
                '"postgresql" (MariaDB on a database host is not supported yet)'
            )
        if db in self.app_hosts:
            raise ValueError(
                "[servers] db names the app's own host: leave it out to keep the database "
                "on the box, or name another host"
            )
        return self

    @model_validator(mode="after")
    def _deploy_user_needs_ssh(self) -> Config:
        if self.server.user == "onebox" and not self.security.wants("ssh"):
            raise ValueError(
                '[server] user = "onebox" is the deploy user that setup makes, but '
                "[security] skip has ssh: set user to root (or yours), or drop the skip"
            )
        return self


class Project(BaseModel):
    """A loaded configuration and where it came from."""

    model_config = ConfigDict(frozen=True)

    root: Path
    source: Path
    config: Config
    # What loading found worth saying (a Procfile read, its web line left out).
    notes: tuple[str, ...] = ()


def find_config(start: Path) -> Path | None:
    """The onebox.toml (or pyproject.toml with [tool.onebox]) governing `start`."""
    for folder in (start, *start.parents):
        candidate = folder / CONFIG_FILE
        if candidate.is_file():
            return candidate
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and "[tool.onebox" in pyproject.read_text(errors="replace"):
            return pyproject
    return None


def load_project(start: Path | None = None) -> Project:
    start = (start or Path.cwd()).resolve()
    source = find_config(start)
    if source is None:
        raise ConfigError(
            f"no {CONFIG_FILE} in {start} or its parents",
            hint="run `onebox init` in your Django project first",
        )
    config, notes = with_procfile(source.parent, load_config(source))
    config = with_hosts(config)
    return Project(root=source.parent, source=source, config=config, notes=notes)


def with_hosts(config: Config) -> Config:
    """[servers] web: its first host is the one commands act on unless --host says
    otherwise; [servers] db: to the web hosts, the database is an external one there."""
    if config.servers.web and not config.server.host:
        server = config.server.model_copy(update={"host": config.servers.web[0]})
        config = config.model_copy(update={"server": server})
    if not config.servers.db:
        return config
    if config.database.url:
        raise ConfigError(
            "[servers] db and [database] url both say where the database is",
            hint="keep url for a database onebox does not manage, db for one it sets up",
        )
    from onebox.hosts import database_url

    url = database_url(config.app.name, config.servers.db)
    database = config.database.model_copy(update={"url": url})
    return config.model_copy(update={"database": database})


def with_procfile(root: Path, config: Config) -> tuple[Config, tuple[str, ...]]:
    """[processes] from a Procfile when onebox.toml has none (see procfile.py)."""
    if config.processes:
        return config, ()
    from onebox import procfile

    found = procfile.read(root)
    if found is None:
        return config, ()
    deploy = config.deploy.model_copy(update={"release": [*config.deploy.release, *found.release]})
    updated = config.model_copy(update={"processes": found.processes, "deploy": deploy})
    return updated, tuple(found.notes)


def load_config(path: Path) -> Config:
    try:  # utf-8-sig: a byte-order mark some editors write is not TOML, but harmless
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text ({exc.reason})", hint="save it as UTF-8"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}", hint="fix the TOML syntax at that line") from None
    prefix: tuple[str, ...] = ()
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("onebox", {})
        prefix = ("tool", "onebox")
    _no_control_characters(data, path)
    _fill_detected(data, path)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, text, prefix), hint=_HINT) from None


_HINT = "see docs/configuration.md for every key and its meaning"

DETECTED_APP_KEYS = ("name", "settings", "wsgi")


def _fill_detected(data: dict[str, Any], path: Path) -> None:
    """A hand-written onebox.toml needs only what cannot be detected: [app] name,
    settings and wsgi and [build] requirements, when left out, are detected as init
    would (from the source, nothing imported)."""
    app, build = data.get("app", {}), data.get("build", {})
    if not isinstance(app, dict) or not isinstance(build, dict):
        return  # the validation says what is wrong with them
    missing = [key for key in DETECTED_APP_KEYS if key not in app]
    if not missing and "requirements" in build:
        return
    from onebox.detect import detect  # (detect reads source files: only when needed)

    try:
        found = detect(path.parent, app.get("settings"))
    except ConfigError:
        return  # not detectable: the validation names the missing keys
    data["app"] = {**{key: getattr(found, key) for key in missing}, **app}
    if "requirements" not in build and found.requirements:
        data["build"] = {**build, "requirements": found.requirements}


def _describe(exc: ValidationError, path: Path, text: str, prefix: tuple[str, ...]) -> str:
    lines = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        line = locate(text, prefix + loc)
        where = f"{path}:{line}" if line else str(path)
        key = ".".join(loc)
        if error["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key '{key}'{_did_you_mean(loc)}")
        elif error["type"] == "missing":
            lines.append(f"{where}: missing key '{key}'")
        else:
            lines.append(f"{where}: '{key}' {error['msg'].removeprefix('Value error, ')}")
    return "invalid configuration\n  " + "\n  ".join(lines)


def _did_you_mean(loc: tuple[str, ...]) -> str:
    model: Any = Config
    parts = list(loc[:-1])
    while parts:
        field = model.model_fields.get(parts.pop(0))
        annotation = getattr(field, "annotation", None)
        args: tuple[Any, ...] = getattr(annotation, "__args__", ())
        if getattr(annotation, "__origin__", None) is dict and len(args) == 2 and parts:
            annotation = args[1]  # [processes] NAME = {...}: the name is not a key
            parts.pop(0)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        model = annotation
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def locate(text: str, loc: tuple[str, ...]) -> int | None:
    """Best-effort line number of a dotted key in TOML text (tomllib keeps no positions)."""
    table: tuple[str, ...] = ()
    current: tuple[str, ...] = ()
    best = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        header = re.match(r"^\[+\s*([^\]]+?)\s*\]+", line)
        if header:
            current = tuple(part.strip().strip('"') for part in header.group(1).split("."))
            if current == loc[: len(current)] and len(current) > len(table):
                table, best = current, number
            continue
        match = re.match(r'^"?([A-Za-z0-9_-]+)"?\s*=', line)
        if match and (*current, match.group(1)) == loc[: len(current) + 1]:
            return number
    return best


def set_server_user(path: Path, user: str) -> bool:
    """Write [server] user = USER into onebox.toml (or [tool.onebox.server] in
    pyproject.toml), keeping the rest of the file as it is, comments included; and drop
    a user@ from [server] host, which would win over it. False if it was there already."""
    text = path.read_text(encoding="utf-8-sig")
    document = tomlkit.parse(text)
    root = document["tool"]["onebox"] if path.name == "pyproject.toml" else document
    server = root.get("server")
    if server is None:
        server = root["server"] = tomlkit.table()
    if server.get("user") != user:
        server["user"] = user
        server["user"].comment("the deploy user `onebox setup` made (root login is off)")
    host = str(server.get("host", ""))
    if "@" in host and not host.startswith("sandbox:"):
        server["host"] = host.rpartition("@")[2]
    new = tomlkit.dumps(document)
    if new == text:
        return False
    tomllib.loads(new)  # never write a file that does not parse
    write_atomically(path, new)
    return True


def set_config_value(path: Path, section: str, key: str, value: str) -> bool:
    """Write [section] key = value into onebox.toml (or pyproject.toml's
    [tool.onebox.section]), the rest of the file kept as it is. False if it was so."""
    text = path.read_text(encoding="utf-8-sig")
    document = tomlkit.parse(text)
    root = document["tool"]["onebox"] if path.name == "pyproject.toml" else document
    table = root.get(section)
    if table is None:
        table = root[section] = tomlkit.table()
    if table.get(key) == value:
        return False
    table[key] = value
    new = tomlkit.dumps(document)
    tomllib.loads(new)  # never write a file that does not parse
    write_atomically(path, new)
    return True


def write_atomically(path: Path, text: str, mode: int = 0o666) -> None:
    """All of the new file or none of it (never a half-written onebox.toml). `mode`: the
    file's from its creation on, less the umask, as open() does (a secret's file is never
    readable by others, not even for a moment)."""
    tmp = path.with_name(f".{path.name}.onebox-tmp")
    try:
        tmp.unlink(missing_ok=True)  # (one left by a killed run keeps its old mode)
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "w") as file:
            file.write(text)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
