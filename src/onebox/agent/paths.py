"""Every path onebox uses on a server, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SLOTS = ("blue", "green")
ETC = Path("/etc/onebox")
TOOLS = Path("/opt/onebox")
CACHE = Path("/var/cache/onebox")


@dataclass(frozen=True)
class AppPaths:
    app: str

    @property
    def root(self) -> Path:
        return Path("/srv") / self.app

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
    def secrets(self) -> Path:
        return ETC / f"{self.app}.env"

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
        return Path("/var/lib/onebox/maintenance") / self.app

    @property
    def run(self) -> Path:
        return Path("/run") / f"onebox-{self.app}"

    @property
    def live_socket(self) -> Path:
        return self.run / "live.sock"

    @property
    def unit_template(self) -> Path:
        return Path("/etc/systemd/system") / f"onebox-{self.app}@.service"

    @property
    def tmpfiles(self) -> Path:
        return Path("/etc/tmpfiles.d") / f"onebox-{self.app}.conf"

    @property
    def caddy_site(self) -> Path:
        return Path("/etc/caddy/sites") / f"{self.app}.caddy"

    def unit(self, slot: str) -> str:
        return f"onebox-{self.app}@{slot}.service"

    def socket(self, slot: str) -> Path:
        return self.run / f"{slot}.sock"

    def slot_link(self, slot: str) -> Path:
        return self.slots / slot
