"""Every path onebox uses on a server, in one place: the modules, the client and the
templates (AppPaths.template_context) all take them from here. A unit test refuses a
path of this layout spelled anywhere else."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SLOTS = ("blue", "green")
SRV = Path("/srv")  # /srv/APP: the app's releases, virtualenvs, slots, shared data
ETC = Path("/etc/onebox")  # root-only: secrets, settings, keys, the firewall rules
TOOLS = Path("/opt/onebox")
AGENT_HOME = TOOLS / "agent"  # the installed agent, run by the entry and the timers
UV = TOOLS / "uv" / "bin" / "uv"
ENTRY = Path("/usr/local/sbin/onebox-agent")  # the deploy user's one sudo command
CACHE = Path("/var/cache/onebox")
AGENT_CACHE = CACHE / "agent"  # each shipped agent, compiled (entry_script.py)
IMAGE_BASES = CACHE / "image-base"  # the OCI images' base layers, by package set (export.py)
IMAGE_EXPORTS = CACHE / "export"  # each app's newest exported image (export.py)
STATE = Path("/var/lib/onebox")
RUNS = STATE / "runs"  # detached runs (launch.py)
GUARDS = STATE / "guards"  # armed undos (guard.py)
FIREWALL_WISHES = STATE / "firewall"  # each app's firewall wish (firewall.py)
SETUP_LOCK = STATE / "setup.lock"
LISTS_STAMP = STATE / "apt-lists.stamp"
MAINTENANCE = STATE / "maintenance"
DRAINS = STATE / "drain"  # while DRAINS/<app> exists, the proxy closes each connection
MOVE_PORTS = {80: 8080, 443: 8443}  # Caddy's ports while Apache still holds 80 and 443
BALANCED_PORT = 8480  # a web host's site for the load balancer ([servers] lb), plain HTTP
CADDY_CERTS = Path("/etc/caddy/certs")  # an adopted site's certificate, for Caddy
LOGS = Path("/var/log/onebox")  # the history (history.py)
FIREWALL_RULES = ETC / "firewall.nft"
UNIT_DIR = Path("/etc/systemd/system")
TMPFILES_DIR = Path("/etc/tmpfiles.d")
CADDYFILE = Path("/etc/caddy/Caddyfile")
CADDY_SITES = Path("/etc/caddy/sites")
CADDY_LOGS = Path("/var/log/caddy")  # each app's access log, written (and rolled) by Caddy
CADDY_DROPIN = UNIT_DIR / "caddy.service.d" / "onebox.conf"
APACHE_INCLUDES = Path("/etc/apache2/onebox")  # each app's site, included in its vhost
# A database host ([servers] db, db_host.py): the CA that signs its certificate (root's
# alone), each app's database password, and the certificate PostgreSQL serves.
DB_HOST = ETC / "db-host"
DB_CA_KEY, DB_CA_CERT = DB_HOST / "ca.key", DB_HOST / "ca.crt"
POSTGRESQL_ETC = Path("/etc/postgresql")
PG_TLS = POSTGRESQL_ETC / "onebox-tls"  # server.key and server.crt, the postgres user's


@dataclass(frozen=True)
class AppPaths:
    app: str

    @property
    def root(self) -> Path:
        return SRV / self.app

    @property
    def releases(self) -> Path:
        return self.root / "releases"

    @property
    def venvs(self) -> Path:
        return self.root / "venvs"

    @property
    def shared(self) -> Path:
        return self.root / "shared"

    @property
    def media(self) -> Path:
        return self.shared / "media"

    @property
    def media_copy(self) -> Path:
        """The copy of the media bucket ([media] storage = "s3") that backups take."""
        return self.shared / "media-bucket"

    @property
    def state(self) -> Path:
        """Where the app's processes keep what they must write (celery beat's schedule)."""
        return self.shared / "state"

    @property
    def db(self) -> Path:
        return self.shared / "db"

    @property
    def current(self) -> Path:
        return self.root / "current"

    @property
    def slots(self) -> Path:
        return self.root / "slots"

    @property
    def live_slot(self) -> Path:
        return self.slots / "live"

    @property
    def background(self) -> Path:
        """The release the processes and scheduled commands run (see background.py)."""
        return self.slots / "background"

    @property
    def background_state(self) -> Path:
        """The background units installed now, for moving and removing them."""
        return ETC / f"{self.app}.background.json"

    def process_unit(self, name: str, replica: int) -> str:
        return f"onebox-{self.app}-{name}@{replica}.service"

    def schedule_unit(self, name: str, kind: str = "service") -> str:
        return f"onebox-{self.app}-{name}.{kind}"

    @property
    def lock(self) -> Path:
        return self.root / ".deploy.lock"

    @property
    def roll_lock(self) -> Path:
        """Held by a rolling deploy or rollback on every web host, for the whole roll."""
        return self.root / ".roll.lock"

    @property
    def secrets(self) -> Path:
        return ETC / f"{self.app}.env"

    @property
    def database_ca(self) -> Path:
        """On an app host: the CA certificate the database host's certificate is checked
        against (public; the app's user reads it: PGSSLROOTCERT)."""
        return self.root / "database-ca.crt"

    @property
    def db_host_password(self) -> Path:
        """On the database host: the app's database password (the app hosts get it)."""
        return DB_HOST / f"{self.app}.password"

    @property
    def settings(self) -> Path:
        """What setup knows of the app that scheduled jobs need (engine, backup policy)."""
        return ETC / f"{self.app}.json"

    @property
    def backups(self) -> Path:
        """Root-only: the on-server restic repository and the backups' working space."""
        return self.root / "backups"

    @property
    def backup_repo(self) -> Path:
        return self.backups / "repository"

    @property
    def backup_tmp(self) -> Path:
        return self.backups / "tmp"

    @property
    def backup_state(self) -> Path:
        return self.backups / "state.json"

    @property
    def backup_key(self) -> Path:
        """The backups' encryption key. Not in the secrets file: the app never needs it."""
        return ETC / f"{self.app}.backup-key"

    @property
    def backup_env(self) -> Path:
        """Credentials of the off-site repository (S3 keys), root-only."""
        return ETC / f"{self.app}.backup.env"

    @property
    def backup_ssh_key(self) -> Path:
        return ETC / f"{self.app}.backup-ssh"

    @property
    def maintenance(self) -> Path:
        """When `on.html` exists here, Caddy answers every request with it and a 503."""
        return MAINTENANCE / self.app

    @property
    def drain(self) -> Path:
        """While this file exists, the proxy (Apache or Caddy) answers every request with
        `Connection: close`: kept-alive clients reconnect (to wherever 443 leads now)."""
        return DRAINS / self.app

    @property
    def caddy_cert(self) -> tuple[Path, Path]:
        return CADDY_CERTS / f"{self.app}.pem", CADDY_CERTS / f"{self.app}.key"

    @property
    def run(self) -> Path:
        return Path("/run") / f"onebox-{self.app}"

    @property
    def live_socket(self) -> Path:
        return self.run / "live.sock"

    @property
    def unit_template(self) -> Path:
        return UNIT_DIR / f"onebox-{self.app}@.service"

    @property
    def tmpfiles(self) -> Path:
        return TMPFILES_DIR / f"onebox-{self.app}.conf"

    @property
    def caddy_site(self) -> Path:
        return CADDY_SITES / f"{self.app}.caddy"

    @property
    def access_log(self) -> Path:
        return CADDY_LOGS / f"{self.app}-access.log"

    @property
    def apache_site(self) -> Path:
        return APACHE_INCLUDES / f"{self.app}.conf"

    @property
    def apache_original(self) -> Path:
        """The adopted vhost file as it was before onebox first changed it."""
        return ETC / f"{self.app}.apache-vhost.orig"

    def unit(self, slot: str) -> str:
        return f"onebox-{self.app}@{slot}.service"

    def socket(self, slot: str) -> Path:
        return self.run / f"{slot}.sock"

    def slot_link(self, slot: str) -> Path:
        return self.slots / slot

    def template_context(self) -> dict[str, str]:
        """The layout as the templates (units, Caddy's site, timers) spell it."""
        return {
            "root": str(self.root),
            "run": str(self.run),
            "live_socket": str(self.live_socket),
            "secrets": str(self.secrets),
            "maintenance": str(self.maintenance),
            "backups": str(self.backups),
            "db": str(self.db),
            "shared": str(self.shared),
            "agent_home": str(AGENT_HOME),
            "cache": str(CACHE),
            "state_dir": str(STATE),
            "logs": str(LOGS),
            "caddy_sites": str(CADDY_SITES),
            "access_log": str(self.access_log),
            "apache_site": str(self.apache_site),
            "drains": str(DRAINS),
            "drain": str(self.drain),
            "media": str(self.media),
            "caddyfile": str(CADDYFILE),
        }
