"""Media on S3-compatible object storage ([media] storage = "s3"): the deploy's check
that the app's settings really store there and that the bucket answers, and the bucket's
copy on the server that backups take and restores put back.

Everything here runs in a release's own Python, as the app, through Django's default
storage: the bucket, the credentials, the endpoint and the key prefix are the ones the
app itself uses (its settings may set any of django-storages' options), and the keys
never leave the app's environment. The agent itself imports no boto3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .django import Release
from .paths import AppPaths
from .protocol import AgentError, ExitCode
from .releases import manifest, release_env
from .system import ensure_dir

# Prints the default storage's class and bucket, and whether the bucket answers.
CHECK_PROBE = """
import json, django
django.setup()
from django.core.files.storage import default_storage
found = {"bucket": getattr(default_storage, "bucket_name", None), "error": ""}
cls = type(default_storage._wrapped)
found["backend"] = f"{cls.__module__}.{cls.__qualname__}"
if found["bucket"]:
    try:
        default_storage.connection.meta.client.head_bucket(Bucket=found["bucket"])
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        found["error"] = f"{type(exc).__name__}: {exc}"
        found["code"] = str(code)
print("ONEBOX-MEDIA " + json.dumps(found))
"""

# The bucket's objects (under the storage's location) into a folder, incrementally: an
# object is fetched again only when its ETag or size changed since the last copy (the
# index beside the files), files of deleted objects go. Keys that name no file (a folder
# marker "a/", a "..", both "a" and "a/b") are counted, not written. The disk must have
# room for what is fetched, first: else it says how much, and fetches nothing.
MIRROR_PROBE = """
import json, os, pathlib, shutil, django
django.setup()
from django.core.files.storage import default_storage as storage
target = pathlib.Path(os.environ["ONEBOX_MEDIA_COPY"])
index_file = target / ".onebox-index.json"
try:
    index = json.loads(index_file.read_text())
except (OSError, ValueError):
    index = {}
prefix = (storage.location or "").strip("/")
prefix = prefix + "/" if prefix else ""
seen, fetched, unsafe, size, wanted = {}, 0, 0, 0, []
for item in storage.bucket.objects.filter(Prefix=prefix):
    key = item.key
    if set(key.split("/")) & {"", ".", ".."} or key == ".onebox-index.json":
        unsafe += 1  # (a folder marker "a/", or a key no file can be named after)
        continue
    state = [item.e_tag, item.size]
    path = target / key
    if index.get(key) == state and path.is_file() and path.stat().st_size == item.size:
        seen[key], size = state, size + item.size
    else:
        wanted.append((key, state, path))
needed = sum(state[1] for key, state, path in wanted) + (64 << 20)
free = shutil.disk_usage(target).free
if needed > free:
    print("ONEBOX-MIRROR " + json.dumps({"needed": needed, "free": free}))
    raise SystemExit(0)
for key, state, path in wanted:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".onebox-part")
        storage.bucket.download_file(key, str(partial))
        os.replace(partial, path)
    except (IsADirectoryError, NotADirectoryError, FileExistsError):
        unsafe += 1  # both "a" and "a/b" in the bucket: one file system holds one of them
        continue
    seen[key], size, fetched = state, size + state[1], fetched + 1
removed = 0
for path in sorted(target.rglob("*"), reverse=True):
    name = str(path.relative_to(target))
    if path.is_file() and name != ".onebox-index.json" and name not in seen:
        path.unlink()
        removed += 1
    elif path.is_dir() and not any(path.iterdir()):
        path.rmdir()
index_file.write_text(json.dumps(seen))
print("ONEBOX-MIRROR " + json.dumps({"objects": len(seen), "bytes": size, "fetched": fetched,
                                     "removed": removed, "unsafe": unsafe,
                                     "bucket": storage.bucket_name}))
"""

# The copy's files back into the bucket: each one the bucket lacks or holds with another
# size or ETag. Objects the copy does not have (uploaded since the backup) are counted
# and left: a restore loses nothing uploaded after it.
UPLOAD_PROBE = """
import json, os, pathlib, django
django.setup()
from django.core.files.storage import default_storage as storage
source = pathlib.Path(os.environ["ONEBOX_MEDIA_COPY"])
try:
    index = json.loads((source / ".onebox-index.json").read_text())
except (OSError, ValueError):
    index = {}
prefix = (storage.location or "").strip("/")
prefix = prefix + "/" if prefix else ""
there = {o.key: [o.e_tag, o.size] for o in storage.bucket.objects.filter(Prefix=prefix)}
uploaded = 0
files = [p for p in source.rglob("*") if p.is_file() and p.name != ".onebox-index.json"]
for path in files:
    key = str(path.relative_to(source))
    state = there.get(key)
    if state and state[1] == path.stat().st_size and state == index.get(key):
        continue
    storage.bucket.upload_file(str(path), key)
    uploaded += 1
kept = len(set(there) - {str(p.relative_to(source)) for p in files})
print("ONEBOX-UPLOAD " + json.dumps({"files": len(files), "uploaded": uploaded,
                                     "left": kept, "bucket": storage.bucket_name}))
"""

STORAGES_HINT = (
    "store uploads with django-storages: add django-storages[s3] to your requirements and "
    'set STORAGES["default"] = {"BACKEND": "storages.backends.s3.S3Storage"} and '
    'AWS_STORAGE_BUCKET_NAME = os.environ["AWS_STORAGE_BUCKET_NAME"] in the settings '
    "(docs/configuration.md, [media]); or remove [media] storage to keep them on the server"
)


def check(release: Release, media: dict[str, Any]) -> str:
    """Refuse a release whose settings do not store media in [media] bucket, or whose
    bucket does not answer with the keys the server has, before anything is switched."""
    found = release.probe(CHECK_PROBE, "ONEBOX-MEDIA", "checking the media storage")
    bucket = media["bucket"]
    if not found["bucket"]:
        raise AgentError(
            f'[media] storage is "s3", but the settings store uploads with '
            f"{found['backend']}, on this host's disk alone; nothing was switched",
            hint=STORAGES_HINT,
            code=ExitCode.CONFIG,
        )
    if found["bucket"] != bucket:
        raise AgentError(
            f"[media] bucket is {bucket!r}, but the settings store uploads in "
            f"{found['bucket']!r}; nothing was switched",
            hint="read the bucket from the environment onebox sets "
            '(AWS_STORAGE_BUCKET_NAME = os.environ["AWS_STORAGE_BUCKET_NAME"]), or name '
            "the settings' bucket in [media] bucket: backups copy that one",
            code=ExitCode.CONFIG,
        )
    if found["error"]:
        raise AgentError(
            f"the media bucket {bucket!r} does not answer: {found['error']}; nothing was switched",
            hint=_bucket_hint(str(found.get("code", ""))),
            code=ExitCode.CONFIG,
        )
    return f"{found['backend']}, bucket {bucket} answers"


def _bucket_hint(code: str) -> str:
    if code in ("404", "NoSuchBucket"):
        return "create the bucket at your provider (or fix [media] bucket), then deploy again"
    if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return (
            "the keys are refused: set the right ones with `onebox env set "
            "AWS_ACCESS_KEY_ID=- AWS_SECRET_ACCESS_KEY=-` (a key allowed to read and write "
            "the bucket), then deploy again"
        )
    return (
        "check [media] endpoint (the provider's S3 URL) and region, and that this host "
        "reaches it, then deploy again"
    )


def bucket_release(paths: AppPaths, backup: bool = False) -> Release | None:
    """The live release, if it stores media in a bucket (its manifest says): backups
    and restores reach the bucket through it. `backup`: None as well when [media]
    backup = false leaves the bucket out of the backups."""
    if not paths.current.is_symlink():
        return None
    live = paths.current.resolve()
    found = manifest(live)
    media = found.get("media") or {}
    if media.get("storage") != "s3" or (backup and not media.get("backup", True)):
        return None
    return Release(paths.app, live, release_env(paths, live), found.get("manage", "manage.py"))


def copy_bucket(release: Release, paths: AppPaths) -> dict[str, Any]:
    """The bucket's objects into the app's media copy, incrementally."""
    ensure_dir(paths.media_copy, mode=0o2750, owner=paths.app, group=paths.app)
    copy = paths.media_copy
    copied = _run(release, MIRROR_PROBE, "ONEBOX-MIRROR", copy, "copying the media bucket")
    if "needed" in copied:
        raise AgentError(
            f"not enough disk space to copy the media bucket: {copied['needed'] >> 20} MB "
            f"needed, {copied['free'] >> 20} MB free on {copy}; nothing was backed up",
            hint="grow the disk; or keep the bucket's history at the provider (versioning) "
            "and leave it out of the backups with [media] backup = false (then deploy)",
        )
    return copied


def upload_copy(release: Release, paths: AppPaths) -> dict[str, Any]:
    """The media copy (as a restore put it back) into the bucket: what differs or is missing."""
    copy = paths.media_copy
    return _run(release, UPLOAD_PROBE, "ONEBOX-UPLOAD", copy, "putting media back in the bucket")


def _run(release: Release, source: str, marker: str, folder: Path, what: str) -> dict[str, Any]:
    # (hours: a first copy of a large bucket)
    return release.probe(source, marker, what, timeout=6 * 3600, ONEBOX_MEDIA_COPY=str(folder))
