"""The sections of onebox.toml as typed models: [app], [server], [build], [deploy],
[env], [database], [media], [backup], [security] (the background ones are in background.py).

The schema doubles as documentation: `onebox init` writes a commented file from
templates/onebox.toml.j2 whose keys are exactly these models' fields.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from onebox.errors import ConfigError
from onebox.timers import is_calendar

CONFIG_FILE = "onebox.toml"
# Every pattern is used with fullmatch: `$` would also match before a trailing newline,
# and these values land in root's unit files, the Caddyfile and command lines.
APP_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MODULE = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
SETTINGS_MODULE = re.compile(MODULE)
WORKER_CLASS = re.compile(MODULE)
WSGI_OBJECT = re.compile(rf"{MODULE}(?::[A-Za-z_][A-Za-z0-9_]*)?")
RELATIVE_PATH = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_./-]*")
URL_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")
HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
USER_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")  # a Debian login name
SSH_NAME = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.@:\[\]-]*")
CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")


def is_hostname(value: str) -> bool:
    labels = value.removesuffix(".").split(".")
    return 0 < len(value) <= 253 and all(HOST_LABEL.fullmatch(label) for label in labels)


def check_host(value: str) -> str:
    """[server] host and [servers]' hosts: how onebox reaches a server over SSH."""
    if value and not SSH_NAME.fullmatch(value):
        raise ValueError(
            'must be an address, a host name, user@host or sandbox:NAME, like "203.0.113.7"'
        )
    return value


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
    # gunicorn's worker processes, threads per worker and worker class. Unset: derived
    # on the server from its cores and memory (agent/sizing.py), shown by `onebox status`.
    workers: Annotated[int, Field(ge=1, le=64)] | None = None
    threads: Annotated[int, Field(ge=1, le=64)] | None = None
    # "gthread" (the default: threads, and connections kept open to the proxy), "sync"
    # (one request per process, as gunicorn's own default), or an async class such as
    # "gevent" (its package in your requirements). ASGI apps run uvicorn's worker.
    worker_class: str | None = None
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

    @field_validator("worker_class")
    @classmethod
    def _worker_class(cls, value: str | None) -> str | None:
        if value is not None and not WORKER_CLASS.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a gunicorn worker class: use gthread, sync, gevent, "
                "eventlet, tornado, or a dotted path (package.module.WorkerClass)"
            )
        return value

    @model_validator(mode="after")
    def _workers_fit(self) -> AppConfig:
        if self.asgi and self.worker_class:
            raise ValueError(
                "worker_class does not apply with asgi: ASGI apps are served by uvicorn's "
                "worker; remove worker_class (or asgi, to serve the WSGI app)"
            )
        if self.threads and self.threads > 1 and self.worker_class not in (None, "gthread"):
            raise ValueError(
                f"threads = {self.threads} needs the gthread worker, not "
                f'{self.worker_class!r}: remove threads, or set worker_class = "gthread"'
            )
        return self

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
    # What answers on ports 80 and 443: onebox's Caddy, or the server's own Apache kept in
    # front of onebox's releases (a site `onebox adopt` took over; see [apache]).
    proxy: Literal["caddy", "apache"] = "caddy"

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return check_host(value)

    @field_validator("user")
    @classmethod
    def _user(cls, value: str | None) -> str | None:
        if value is not None and not USER_NAME.fullmatch(value):
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


class ServersConfig(_Section):
    """Hosts with roles: the web hosts (default: [server] host alone), a load balancer
    in front of them (Caddy, set up by onebox), and the database on a host of its own
    (PostgreSQL, set up by onebox: db_host.py), reached by the web hosts over TLS."""

    web: list[str] = []
    # A host onebox sets up as the load balancer, or "external": one it does not (a
    # cloud provider's), which connects from `lb_addresses` to each web host's port 8480.
    lb: str = ""
    # lb = "external": the addresses (or networks, "10.0.0.0/24") the balancer connects
    # from; the web hosts admit it alone and take the client's address from its headers.
    lb_addresses: list[str] = []
    db: str = ""
    # Hosts that run [processes] and [schedule] (Celery workers and beat, cron jobs)
    # instead of the first web host: the app's release, no web traffic. The first of
    # them runs [schedule] and each process, once (a second is a spare, kept level).
    worker: list[str] = []

    @field_validator("lb", "db")
    @classmethod
    def _host(cls, value: str) -> str:
        return check_host(value)

    @field_validator("lb_addresses")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f'{entry!r} is not an address or network, like "10.0.0.5" or "10.0.0.0/24"'
                ) from None
        return value

    @model_validator(mode="after")
    def _external(self) -> ServersConfig:
        if self.lb == "external" and not self.lb_addresses:
            raise ValueError(
                'lb = "external" needs the addresses the balancer connects from: '
                'lb_addresses = ["10.0.0.0/24"] (its private network, at your provider)'
            )
        if self.lb_addresses and self.lb != "external":
            raise ValueError(
                'lb_addresses are for lb = "external" (a balancer onebox does not set up); '
                "onebox's own balancer is admitted by its address"
            )
        return self

    @property
    def managed_lb(self) -> str:
        """The load balancer host onebox sets up, if any."""
        return "" if self.lb == "external" else self.lb

    @field_validator("web", "worker")
    @classmethod
    def _web(cls, value: list[str]) -> list[str]:
        for host in value:
            check_host(host)
        if len(set(value)) != len(value):
            raise ValueError("names a host twice")
        return value


SERVER_PATH = re.compile(r"/[A-Za-z0-9._/@+-]*\Z")


class ApacheConfig(_Section):
    """The site Apache + mod_wsgi served before onebox (written by `onebox adopt`)."""

    # The vhost file onebox edits: its mod_wsgi lines commented out, onebox's include
    # added (the original is kept beside onebox's other files, for the way back).
    vhost: str = ""
    # The code and virtualenv mod_wsgi served, and the settings module and user it ran
    # them with: setup reads the database password from there. Never changed.
    code: str = ""
    venv: str = ""
    settings: str = ""
    user: str = "www-data"
    # The vhost's certificate and key: Caddy serves them once the site moved to it
    # (`onebox adopt --switch-to caddy`), until they are taken out of here; then Caddy
    # gets its own ([server] tls).
    cert: str = ""
    key: str = ""

    @field_validator("vhost", "code", "venv", "cert", "key")
    @classmethod
    def _path(cls, value: str) -> str:
        if value and not SERVER_PATH.match(value):
            raise ValueError('must be an absolute path on the server, like "/var/www/shop"')
        return value

    @field_validator("settings")
    @classmethod
    def _module(cls, value: str) -> str:
        if value and not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", value):
            raise ValueError('must be a Python module, like "shop.settings"')
        return value

    @field_validator("user")
    @classmethod
    def _user(cls, value: str) -> str:
        if not USER_NAME.fullmatch(value):
            raise ValueError('must be a user name on the server, like "www-data"')
        return value


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
    # After a deploy the previous release stays running, not live, so that `onebox
    # rollback` to it only switches traffic (well under a second). "auto": where the
    # server has the memory for it; true: always; false: never.
    standby: bool | Literal["auto"] = "auto"
    # With several web hosts ([servers] web): how many build beside their live release,
    # and then switch, at once (the first web host builds alone first: it migrates).
    batch: Annotated[int, Field(ge=1, le=100)] = 1


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


# S3 bucket names (AWS's rules; Hetzner, Scaleway, R2, MinIO and Garage accept the same).
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# What boto3 reads from the environment itself: the keys are secrets on the server.
S3_SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


class MediaConfig(_Section):
    """Where uploaded files live: the server's own folder (shared/media, backed up), or an
    S3-compatible bucket that every web host shares (django-storages, configured through
    the environment onebox gives the app: media_storage.py)."""

    storage: Literal["local", "s3"] = "local"
    bucket: str = ""
    # The S3 API's address for a provider other than AWS (MinIO, Hetzner, Scaleway,
    # Cloudflare R2...), like "https://fsn1.your-objectstorage.com"; empty: AWS's own.
    endpoint: str = ""
    region: str = ""
    # false: backups leave the bucket out (one much larger than the server's disk, its
    # history kept by the provider's versioning instead); the database is backed up still.
    backup: bool = True

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        if value and not BUCKET.fullmatch(value):
            raise ValueError(
                "must be an S3 bucket name: 3 to 63 lowercase letters, digits, dots and "
                'dashes, like "shop-media"'
            )
        return value

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        parsed = urlsplit(value)
        if value and (parsed.scheme not in ("http", "https") or not parsed.hostname):
            raise ValueError('must be the S3 API\'s URL, like "https://s3.example.com"')
        if re.search(r"[\s\"'\\]", value):
            raise ValueError("must not hold spaces, quotes or backslashes")
        return value.rstrip("/")

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        if value and not re.fullmatch(r"[a-z0-9-]{2,40}", value):
            raise ValueError('must be a region name, like "eu-central-1"')
        return value

    @model_validator(mode="after")
    def _needs_bucket(self) -> MediaConfig:
        if self.storage == "s3" and not self.bucket:
            raise ValueError('storage = "s3" needs the bucket\'s name: bucket = "shop-media"')
        if self.storage == "local" and (self.bucket or self.endpoint or self.region):
            raise ValueError('bucket, endpoint and region are for storage = "s3"')
        if self.storage == "local" and not self.backup:
            raise ValueError(
                'backup = false is for storage = "s3": the media folder on the server is '
                "always backed up"
            )
        return self

    @property
    def shared(self) -> bool:
        """Every web host sees the same files (in the bucket)."""
        return self.storage == "s3"

    def env(self) -> dict[str, str]:
        """What the app's settings read: django-storages' own setting names and
        cookiecutter-django's (DJANGO_AWS_*), boto3's (AWS_ENDPOINT_URL_S3,
        AWS_DEFAULT_REGION). The keys stay secrets: the DJANGO_ names refer to them."""
        if self.storage != "s3":
            return {}
        values = {
            "ONEBOX_MEDIA_STORAGE": "s3",
            "AWS_STORAGE_BUCKET_NAME": self.bucket,
            "DJANGO_AWS_STORAGE_BUCKET_NAME": self.bucket,
            "DJANGO_AWS_ACCESS_KEY_ID": "${AWS_ACCESS_KEY_ID}",
            "DJANGO_AWS_SECRET_ACCESS_KEY": "${AWS_SECRET_ACCESS_KEY}",
        }
        if self.endpoint:
            values |= {"AWS_S3_ENDPOINT_URL": self.endpoint, "AWS_ENDPOINT_URL_S3": self.endpoint}
        if self.region:
            values |= {
                "AWS_S3_REGION_NAME": self.region,
                "DJANGO_AWS_S3_REGION_NAME": self.region,
                "AWS_DEFAULT_REGION": self.region,
            }
        return values

    @property
    def secrets(self) -> list[str]:
        return list(S3_SECRETS) if self.storage == "s3" else []


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
