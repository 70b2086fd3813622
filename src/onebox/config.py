"""onebox.toml: the typed configuration, its loading and its error messages.

The schema doubles as documentation: `onebox init` writes a commented file from
templates/onebox.toml.j2 whose keys are exactly these models' fields.
Validation errors name the file, the line, the key and what is expected; unknown keys
are errors with a did-you-mean, because a typo silently ignored is a production outage.
"""

from __future__ import annotations

import difflib
import re
import shlex
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import tomlkit
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from onebox.errors import ConfigError
from onebox.timers import is_calendar, to_calendar

CONFIG_FILE = "onebox.toml"
# Every pattern is used with fullmatch: `$` would also match before a trailing newline,
# and these values land in root's unit files, the Caddyfile and command lines.
APP_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MODULE = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
SETTINGS_MODULE = re.compile(MODULE)
WSGI_OBJECT = re.compile(rf"{MODULE}(?::[A-Za-z_][A-Za-z0-9_]*)?")
RELATIVE_PATH = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_./-]*")
URL_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")
HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
SSH_NAME = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.@:\[\]-]*")
CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")


def is_hostname(value: str) -> bool:
    labels = value.removesuffix(".").split(".")
    return 0 < len(value) <= 253 and all(HOST_LABEL.fullmatch(label) for label in labels)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


BUILTIN_HEALTH_PATH = "/.onebox/health"


class AppConfig(_Section):
    name: str
    settings: str
    wsgi: str
    # An ASGI application ("proj.asgi:application": Django Channels, websockets, async
    # views holding connections) served instead of wsgi, by gunicorn with uvicorn's worker.
    asgi: str | None = None
    manage: str = "manage.py"
    python: str | None = None
    workers: Annotated[int, Field(ge=1, le=64)] = 2
    # None: onebox's built-in check (Django set up, every database answering), then the
    # home page must not answer 5xx. A path, or several: the first is polled until the
    # release answers, then each must answer 2xx/3xx (redirects within the site followed).
    health_path: str | list[str] | None = None

    @property
    def health_check_path(self) -> str:
        """The path polled while the release starts (and during probation)."""
        paths = self.health_paths
        return paths[0] if paths else BUILTIN_HEALTH_PATH

    @property
    def health_paths(self) -> list[str]:
        if self.health_path is None:
            return []
        return [self.health_path] if isinstance(self.health_path, str) else self.health_path

    @property
    def health_pages(self) -> dict[str, object]:
        """Pages fetched once the release answers, before it gets traffic: {"paths": [...],
        "strict": bool} (strict: 2xx/3xx wanted; else: anything but 5xx)."""
        listed = self.health_paths
        return (
            {"paths": listed[1:], "strict": True} if listed else {"paths": ["/"], "strict": False}
        )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not APP_NAME.fullmatch(value):
            raise ValueError(
                "must be lowercase letters, digits and dashes, start with a letter, "
                "at most 31 characters (it names a system user and systemd units)"
            )
        return value

    @field_validator("settings")
    @classmethod
    def _settings(cls, value: str) -> str:
        if not SETTINGS_MODULE.fullmatch(value):
            raise ValueError('must be a dotted Python module path, like "config.settings"')
        return value

    @field_validator("wsgi")
    @classmethod
    def _wsgi(cls, value: str) -> str:
        if not WSGI_OBJECT.fullmatch(value):
            raise ValueError('must be module:object, like "config.wsgi:application"')
        return value

    @field_validator("asgi")
    @classmethod
    def _asgi(cls, value: str | None) -> str | None:
        if value is not None and not WSGI_OBJECT.fullmatch(value):
            raise ValueError('must be module:object, like "config.asgi:application"')
        return value

    @field_validator("manage")
    @classmethod
    def _manage(cls, value: str) -> str:
        if not RELATIVE_PATH.fullmatch(value) or ".." in value.split("/"):
            raise ValueError(
                'must be a path inside the project, like "manage.py" or "src/manage.py" '
                "(letters, digits, . _ - /)"
            )
        return value

    @field_validator("health_path")
    @classmethod
    def _path(cls, value: str | list[str] | None) -> str | list[str] | None:
        listed = [value] if isinstance(value, str) else value or []
        if isinstance(value, list) and not value:
            raise ValueError("list at least one path, or leave health_path out")
        for path in listed:
            if not URL_PATH.fullmatch(path):
                raise ValueError(
                    f'{path!r} must be a URL path starting with "/", like "/health/", without '
                    "spaces (percent-encode other characters)"
                )
        return value


class ServerConfig(_Section):
    host: str = ""
    user: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    domain: str = ""
    tls: Literal["auto", "public", "internal"] = "auto"
    # A uv-managed Python of this version ("3.12") for the app, instead of the server's
    # system Python (Debian 12: 3.11, Debian 13: 3.13), when the project needs another.
    python: Annotated[str, Field(pattern=r"^3\.\d{1,2}$")] | None = None
    # Where uv downloads that Python from (UV_PYTHON_INSTALL_MIRROR), if not GitHub.
    python_mirror: str = ""

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if value and not SSH_NAME.fullmatch(value):
            raise ValueError(
                'must be an address, a host name, user@host or sandbox:NAME, like "203.0.113.7"'
            )
        return value

    @field_validator("user")
    @classmethod
    def _user(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z_][a-z0-9_.-]{0,31}", value):
            raise ValueError('must be a user name on the server, like "onebox" or "root"')
        return value

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        if not value:
            return value
        bare = re.sub(r"^[a-z]+://", "", value).split("/")[0]
        if bare != value and is_hostname(bare):
            raise ValueError(f'must be the name alone, without scheme or path: domain = "{bare}"')
        if not is_hostname(value):
            raise ValueError(
                'must be a host name, like "shop.example.com" (letters, digits, dashes and dots)'
            )
        return value.lower()


class BuildConfig(_Section):
    requirements: str | None = None
    exclude: list[str] = []
    # Paths or globs shipped although git ignores them (or they look like secrets): a
    # git-ignored production settings file, compiled front-end assets.
    include: list[str] = []
    # false: no collectstatic on the server; STATIC_ROOT is served as the project ships it.
    collectstatic: bool = True
    # Debian packages a dependency built from source needs (headers: "libxml2-dev").
    packages: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9+.-]+$")]] = []


class DeployConfig(_Section):
    build: list[str] = []
    before_migrate: list[str] = []
    release: list[str] = []
    after_switch: list[str] = []
    # How many successful releases stay on the server for `onebox rollback`.
    keep: Annotated[int, Field(ge=1, le=100)] = 5
    # Seconds the old release keeps running after the switch, ready to take the traffic
    # back if the new one crashes or stops answering its health check. 0: no probation.
    probation: Annotated[float, Field(ge=0, le=600)] = 3
    # Seconds the old release has to finish its in-flight requests once it stops.
    drain: Annotated[int, Field(ge=1, le=3600)] = 30


class EnvConfig(_Section):
    vars: dict[str, str] = {}
    secrets: list[str] = []

    @field_validator("vars")
    @classmethod
    def _values(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not ENV_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
            if "\n" in text or "\r" in text or "\0" in text:
                raise ValueError(f"the value of {name} must be a single line")
        return value

    @field_validator("secrets")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not ENV_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid environment variable name")
        return value


URL_SCHEMES = {
    "mysql": ("mysql", "mariadb", "mysql2"),
    "postgresql": ("postgres", "postgresql", "pgsql"),
}


class DatabaseConfig(_Section):
    engine: Literal["sqlite", "mysql", "postgresql"] = "sqlite"
    # An external server (a managed database or a separate host) instead of one on the
    # box: engine://user@host[:port]/name. Its password is a secret, set on the server
    # with `onebox env set DATABASE_PASSWORD=...`, never written here.
    url: str = ""

    @model_validator(mode="after")
    def _url(self) -> DatabaseConfig:
        if not self.url:
            return self
        if self.engine == "sqlite":
            raise ValueError('an external url needs engine = "mysql" or "postgresql"')
        parsed = urlsplit(self.url)
        if parsed.scheme not in URL_SCHEMES[self.engine]:
            raise ValueError(
                f"url must start with {URL_SCHEMES[self.engine][0]}:// for engine "
                f"{self.engine!r}, not {parsed.scheme or 'nothing'}://"
            )
        if re.search(r"[\s\"'\\]", self.url):
            raise ValueError("url must not hold spaces, quotes or backslashes")
        if parsed.password:
            raise ValueError(
                "url holds a password: remove it from the file (it would be committed) and "
                "run `onebox env set DATABASE_PASSWORD=...` instead"
            )
        if not parsed.hostname or not parsed.username or parsed.path.strip("/") == "":
            raise ValueError(f"url must look like {self.engine}://user@host/name")
        return self


class BackupConfig(_Section):
    # When the daily backup runs (a systemd OnCalendar expression), or "off".
    schedule: str = "*-*-* 03:15:00"
    # When the latest backup is restored into a scratch database and compared, or "off".
    verify: str = "Sun *-*-* 04:15:00"
    keep_daily: Annotated[int, Field(ge=0, le=1000)] = 7
    keep_weekly: Annotated[int, Field(ge=0, le=1000)] = 4
    keep_monthly: Annotated[int, Field(ge=0, le=1000)] = 12
    # A second, off-site restic repository: /a/local/path, sftp:user@host:/path or
    # s3:https://host/bucket/path. Backups are always kept on the server too.
    offsite: str = ""

    @field_validator("offsite")
    @classmethod
    def _offsite(cls, value: str) -> str:
        if value and not (value.startswith(("/", "sftp:", "s3:"))):
            raise ValueError(
                "must be an absolute path, sftp:user@host:/path or s3:https://host/bucket/path"
            )
        if re.search(r"[\s%\\\"']", value):  # it lands in a unit file and restic's argv
            raise ValueError("must not hold spaces, quotes, backslashes or %")
        return value

    @field_validator("schedule", "verify")
    @classmethod
    def _calendar(cls, value: str) -> str:
        if not is_calendar(value.strip()):
            raise ValueError(
                f'{value!r} is not a systemd OnCalendar expression: use one like "daily", '
                '"*-*-* 03:15:00" or "Sun *-*-* 04:15:00", or "off" '
                "(`systemd-analyze calendar EXPR` checks one)"
            )
        return value.strip()


SHELL_OPERATORS = {"&&", "||", "|", ";", "&", ">", ">>", "<", "2>", "2>&1", "$(", "`"}
PROCESS_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")
RESERVED_NAMES = {"backup", "verify", "web", "run", "manage"}
STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2")


def split_command(value: str) -> list[str]:
    """A process's or schedule's command line as argv. No shell runs it (so no operator
    means what it would in one): a command that needs one says so, `sh -c "..."`."""
    try:
        argv = shlex.split(value)
    except ValueError as exc:
        raise ValueError(f"cannot read the command {value!r}: {exc}") from None
    if not argv:
        raise ValueError("the command is empty")
    operators = [word for word in argv if word in SHELL_OPERATORS or word.startswith("$(")]
    if operators:
        raise ValueError(
            f"{operators[0]!r} in {value!r} would need a shell, and commands run without "
            f"one: write it as sh -c {shlex.quote(value)}"
        )
    return argv


class _Command(_Section):
    """A section whose `command` is run without a shell (see split_command)."""

    command: str

    @property
    def argv(self) -> list[str]:
        return split_command(self.command)

    @field_validator("command")
    @classmethod
    def _command(cls, value: str) -> str:
        split_command(value)
        return value


class ProcessConfig(_Command):
    """A long-running command ([processes]): a worker, a scheduler, a consumer."""

    # Copies of it (celery workers, say). A scheduler (celery beat) must stay at 1.
    replicas: Annotated[int, Field(ge=1, le=16)] = 1
    # The signal that asks it to stop gracefully (Celery: SIGTERM, a warm shutdown), and
    # the seconds it gets before it is killed.
    # (a Literal of the tuple, for pydantic: mypy wants its members spelled out)
    stop_signal: Literal[STOP_SIGNALS] = "SIGTERM"  # type: ignore[valid-type]
    stop_timeout: Annotated[int, Field(ge=1, le=3600)] = 30

    @model_validator(mode="after")
    def _one_scheduler(self) -> ProcessConfig:
        argv = self.argv
        if self.replicas > 1 and "beat" in argv and any("celery" in w for w in argv[:1]):
            raise ValueError(
                "celery beat must run once (two would send every periodic task twice): replicas = 1"
            )
        return self


class ScheduleConfig(_Command):
    """A command run on a timer ([schedule]): clearsessions, a nightly report."""

    # A systemd calendar expression ("daily", "Mon *-*-* 09:00:00") or a cron line
    # ("*/15 * * * *", "@hourly"), converted to the former.
    when: str
    # Seconds a run may take before it is stopped.
    timeout: Annotated[int, Field(ge=1, le=86400)] = 3600

    @property
    def calendar(self) -> str:
        return to_calendar(self.when)

    @field_validator("when")
    @classmethod
    def _when(cls, value: str) -> str:
        to_calendar(value)
        return value


def _background_names(value: dict[str, Any], what: str) -> dict[str, Any]:
    for name in value:
        if not PROCESS_NAME.fullmatch(name):
            raise ValueError(
                f"{name!r}: a {what} name is lowercase letters, digits and dashes, starting "
                "with a letter (it names a systemd unit)"
            )
        if name in RESERVED_NAMES:
            raise ValueError(f"{name!r} is a name onebox uses itself: choose another")
    return value


class RedisConfig(_Section):
    """Redis from Debian on the server, for this app ([services] redis)."""

    # cache: least recently used keys are evicted when it is full. broker (Celery's
    # queue): nothing is ever evicted (a full Redis refuses writes rather than drop a
    # queued task). Default: broker when a process runs celery, else cache.
    role: Literal["cache", "broker"] | None = None
    # Keep its data across restarts (append-only file on disk). Off: Redis holds only
    # what can be rebuilt (a cache, queued tasks of a queue that tolerates loss).
    persist: bool = False
    # Its memory limit, like "64mb"; default: from the server's memory (64-256 MB).
    maxmemory: str | None = None

    @field_validator("maxmemory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d{1,6}(kb|mb|gb)", value.lower()):
            raise ValueError('must be a size like "64mb" or "1gb"')
        return value.lower() if value else value


class ServicesConfig(_Section):
    # true, or { role = "broker", persist = false, maxmemory = "128mb" }
    redis: RedisConfig | None = None

    @field_validator("redis", mode="before")
    @classmethod
    def _redis(cls, value: Any) -> Any:
        if value is True:
            return {}
        if value is False:
            return None
        if not isinstance(value, dict):
            raise ValueError('must be true, false, or a table like { role = "broker" }')
        return value

    @property
    def redis_config(self) -> RedisConfig | None:
        return self.redis


PROTECTIONS = ("firewall", "ssh", "fail2ban", "updates", "system", "django")


class SecurityConfig(_Section):
    # TCP ports the firewall opens besides SSH, HTTP and HTTPS (e.g. a metrics exporter).
    open_ports: list[Annotated[int, Field(ge=1, le=65535)]] = []
    # Protections onebox leaves alone, each with the reason (onebox audit shows it). django:
    # deploy even when Django's `check --deploy` fails.
    # e.g. { firewall = "the provider's cloud firewall does it" }.
    skip: dict[str, str] = {}
    # When unattended-upgrades may reboot the server after an update that needs it
    # ("04:00"); empty: never by itself (`onebox status` says when a reboot is pending).
    reboot_at: str = ""
    # Seconds the server waits, after setup changed its firewall or sshd, for a new SSH
    # connection to confirm that the user still gets in, before it undoes the change.
    confirm_within: Annotated[int, Field(ge=10, le=3600)] = 120
    # HSTS max-age in seconds; default: two years with a public certificate, one year
    # with the private CA (a LAN name or an address).
    hsts_max_age: Annotated[int, Field(ge=0, le=63072000)] | None = None
    # What the deploy user's sudo allows: "agent" (onebox's agent and nothing else), or
    # "all" (anything as root, without a password: for people who administer the server
    # as that user; `onebox audit` then says so).
    deploy_sudo: Literal["agent", "all"] = "agent"

    @field_validator("reboot_at")
    @classmethod
    def _reboot_at(cls, value: str) -> str:
        if value and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
            raise ValueError('an hour of the day, like "04:00", or "" for never')
        return value

    @field_validator("skip")
    @classmethod
    def _skip(cls, value: dict[str, str]) -> dict[str, str]:
        for name, reason in value.items():
            if name not in PROTECTIONS:
                raise ValueError(
                    f"{name!r} is not a protection onebox sets up; one of: {', '.join(PROTECTIONS)}"
                )
            if not reason.strip():
                raise ValueError(f'say why {name} is skipped: {name} = "the reason"')
        return value

    def wants(self, protection: str) -> bool:
        return protection not in self.skip


def _no_control_characters(data: Any, path: Path, where: str = "") -> None:
    """No string anywhere in the file may hold a control character: each lands in a unit
    file, the Caddyfile, an env file or a command line, where a newline starts a new line."""
    if isinstance(data, dict):
        for key, value in data.items():
            _no_control_characters(key, path, where)
            _no_control_characters(value, path, f"{where}.{key}" if where else str(key))
    elif isinstance(data, list):
        for item in data:
            _no_control_characters(item, path, where)
    elif isinstance(data, str) and CONTROL.search(data):
        raise ConfigError(
            f"{path}: '{where}' holds a control character (a newline, tab or the like): {data!r}",
            hint="write it on one line, without control characters",
        )


class Config(_Section):
    app: AppConfig
    server: ServerConfig = ServerConfig()
    build: BuildConfig = BuildConfig()
    deploy: DeployConfig = DeployConfig()
    env: EnvConfig = EnvConfig()
    database: DatabaseConfig = DatabaseConfig()
    backup: BackupConfig = BackupConfig()
    security: SecurityConfig = SecurityConfig()
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
    return Project(root=source.parent, source=source, config=config, notes=notes)


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


def write_atomically(path: Path, text: str) -> None:
    """All of the new file or none of it (never a half-written onebox.toml)."""
    tmp = path.with_name(f".{path.name}.onebox-tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
