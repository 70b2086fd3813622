"""restic repositories: the one on the server and the optional off-site one.

The password is the backup key in a root-only file (RESTIC_PASSWORD_FILE), never in argv
or in the app's environment. Off-site credentials (S3 keys) come from a root-only env file.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from .paths import CACHE, AppPaths
from .protocol import AgentError
from .system import BASE_ENV, read_env_file, run, tail

SFTP = re.compile(r"^sftp:(?:(?P<user>[^@/]+)@)?(?P<host>[^:/]+):(?P<path>.+)$")


class Repository:
    def __init__(self, location: str, paths: AppPaths, label: str) -> None:
        self.location, self.paths, self.label = location, paths, label

    @property
    def locator(self) -> dict[str, str]:
        """Where the repository and its key are: no secret in it (the key is a file path)."""
        return {
            "RESTIC_REPOSITORY": self.location,
            "RESTIC_PASSWORD_FILE": str(self.paths.backup_key),
            "RESTIC_CACHE_DIR": str(CACHE / "restic"),
        }

    @property
    def env(self) -> dict[str, str]:
        return {
            **BASE_ENV,
            **read_env_file(self.paths.backup_env),
            "HOME": "/root",
            **self.locator,
            "RESTIC_PROGRESS_FPS": "0.2",
        }

    @property
    def options(self) -> list[str]:
        match = SFTP.match(self.location)
        if not match:
            return []
        target = f"{match['user']}@{match['host']}" if match["user"] else match["host"]
        known = f"{self.paths.backup_ssh_key}.known_hosts"
        ssh = (
            f"ssh -i {self.paths.backup_ssh_key} -o BatchMode=yes -o ConnectTimeout=15 "
            f"-o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={known} {target} -s sftp"
        )
        return ["-o", f"sftp.command={ssh}"]

    def argv(self, *args: str) -> list[str]:
        return ["restic", *self.options, *args]

    def run(self, *args: str, what: str = "", timeout: float = 7200) -> str:
        result = run(self.argv(*args), env=self.env, check=False, timeout=timeout)
        if result.returncode != 0:
            raise AgentError(
                f"{what or 'restic ' + args[0]} failed on the {self.label} repository",
                output=tail(result.stderr or result.stdout),
                hint=self.hint(result.stderr),
            )
        return result.stdout

    def hint(self, error: str) -> str:
        if "wrong password" in error or "no key found" in error:
            return (
                f"the key in {self.paths.backup_key} does not open this repository; put the "
                "key shown by `onebox backup key` back into that file"
            )
        if "Permission denied" in error or "ssh" in error.lower():
            return (
                "the server's backup SSH key is not accepted by the off-site host: add the key "
                "`onebox backup key` shows to its authorized_keys"
            )
        if "Is there a repository" in error or "unable to open config file" in error:
            return "run `onebox setup` to create the repository"
        if "ciphertext verification failed" in error or "invalid data returned" in error:
            return "the repository's data is damaged: use another backup, and run `restic check`"
        return ""

    def exists(self) -> bool:
        if self.location.startswith("/"):  # a local repository: no need to start restic
            return (Path(self.location) / "config").is_file()
        result = run(self.argv("cat", "config"), env=self.env, check=False, timeout=120)
        return result.returncode == 0

    def ensure(self, copy_from: Repository | None = None) -> bool:
        """Create the repository when it is not there yet (same chunker: dedup across copies)."""
        if self.exists():
            return False
        args = ["init"]
        env = self.env
        if copy_from is not None:
            args += ["--copy-chunker-params", "--from-repo", copy_from.location]
            env["RESTIC_FROM_PASSWORD_FILE"] = str(self.paths.backup_key)
        result = run(self.argv(*args), env=env, check=False, timeout=600)
        if result.returncode != 0:
            raise AgentError(
                f"could not create the {self.label} backup repository {self.location}",
                output=tail(result.stderr),
                hint=self.hint(result.stderr) or "check the [backup] offsite location",
            )
        return True

    def snapshots(self) -> list[dict]:
        out = self.run("snapshots", "--json", "--no-lock", "--tag", "onebox", timeout=600)
        return json.loads(out or "[]")

    def backup_stdin(self, filename: str, tags: list[str]) -> subprocess.Popen[bytes]:
        argv = self.argv("backup", "--json", "--quiet", "--host", "onebox")
        argv += ["--stdin", "--stdin-filename", filename, *_tag_args(tags)]
        return subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
        )

    def backup_paths(self, paths: list[Path], tags: list[str]) -> str:
        out = self.run(
            "backup",
            "--json",
            "--quiet",
            "--host",
            "onebox",
            *_tag_args(tags),
            *map(str, paths),
            what="backing up the media files",
        )
        return snapshot_id(out)

    def dump(self, snapshot: str, path: str, into: Path) -> None:
        """Write one file of a snapshot to `into` (restic checks every blob's MAC on read)."""
        into.unlink(missing_ok=True)  # never written through a link someone left there
        fd = os.open(into, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as handle:
            result = subprocess.run(
                self.argv("dump", "--no-lock", snapshot, path),
                stdout=handle,
                stderr=subprocess.PIPE,
                env=self.env,
                check=False,
            )
        if result.returncode != 0:
            error = result.stderr.decode(errors="replace")
            raise AgentError(
                f"reading {path} from backup snapshot {snapshot} failed ({self.label})",
                output=tail(error),
                hint=self.hint(error) or "the backup is damaged; nothing was restored",
            )


def _tag_args(tags: list[str]) -> list[str]:
    return ["--tag", ",".join(tags)]


def snapshot_id(output: str) -> str:
    for line in reversed(output.splitlines()):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if data.get("message_type") == "summary" and data.get("snapshot_id"):
            return str(data["snapshot_id"])
    raise AgentError("restic did not report the new snapshot", output=tail(output))


def tags_of(snapshot: dict) -> dict[str, str]:
    out = {}
    for tag in snapshot.get("tags") or []:
        key, _, value = tag.partition("=")
        out[key] = value
    return out
