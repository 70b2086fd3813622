from pathlib import Path

from onebox.bundle import collect, release_id
from onebox.lock import _fully_hashed, build_packages, from_pipfile_lock


def test_pipfile_lock_to_hashed_requirements():
    data = {
        "_meta": {"sources": [{"url": "https://pypi.org/simple", "name": "pypi"}]},
        "default": {
            "django": {"version": "==5.2.8", "hashes": ["sha256:aa", "sha256:bb"]},
            "tzdata": {
                "version": "==2025.2",
                "hashes": ["sha256:cc"],
                "markers": "sys_platform == 'win32'",
            },
        },
        "develop": {"pytest": {"version": "==8.0", "hashes": ["sha256:dd"]}},
    }
    text = from_pipfile_lock(data)
    assert text.splitlines() == [
        "--index-url https://pypi.org/simple",
        "django==5.2.8 --hash=sha256:aa --hash=sha256:bb",
        "tzdata==2025.2; sys_platform == 'win32' --hash=sha256:cc",
    ]


def test_fully_hashed_detection(tmp_path):
    path = tmp_path / "r.txt"
    path.write_text("-i https://pypi.org/simple\ndjango==5.2 \\\n    --hash=sha256:aa\n")
    assert _fully_hashed(path)
    path.write_text("django==5.2 --hash=sha256:aa\nrequests\n")
    assert not _fully_hashed(path)


def test_build_packages_for_compiled_drivers():
    assert build_packages("Django==5.2\nmysqlclient==2.2.4 --hash=sha256:x\n") == [
        "build-essential",
        "pkg-config",
        "default-libmysqlclient-dev",
    ]
    assert build_packages("Django==5.2\n") == []


def test_bundle_excludes_secrets_and_junk(tmp_path: Path):
    for name in (
        "manage.py",
        "app/views.py",
        ".env",
        "db.sqlite3",
        "node_modules/x/y.js",
        "app/__pycache__/v.pyc",
        "media/u.png",
        "onebox.toml",
    ):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    files = {p.as_posix() for p in collect(tmp_path, ["media"]).files}
    assert files == {"manage.py", "app/views.py"}


def test_release_ids_sort_in_time():
    first = release_id()
    assert len(first) == len("20261126-032045-034")


def test_lock_cache_key_follows_included_requirements(tmp_path):
    from onebox.lock import _declaration_files

    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "base.txt").write_text("django\n")
    (tmp_path / "requirements" / "production.txt").write_text("-r base.txt\n")
    files = _declaration_files(tmp_path, "requirements/production.txt")
    assert tmp_path / "requirements" / "base.txt" in files
