from pathlib import Path

from onebox.bundle import collect
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


def test_release_ids_sort_in_deploy_order(tmp_path):
    """Made on the server, one a deploy: in the order of the deploys, whatever the clock
    did in between (a second, a millisecond, the same millisecond, backwards)."""
    from types import SimpleNamespace

    from onebox.agent.releases import new_release_id

    paths = SimpleNamespace(releases=tmp_path)
    made = []
    for now in (
        1800000000.0,
        1800000000.999,
        1800000001.0,
        1800000001.0,
        1799999000.0,
        1800000060.5,
    ):
        made.append(new_release_id(paths, now))  # type: ignore[arg-type]
        (tmp_path / made[-1]).mkdir()
    assert made == sorted(made) and len(set(made)) == len(made)
    assert made[0] == "20270115-080000-000" and made[-1] == "20270115-080100-500"


def test_lock_cache_key_follows_included_requirements(tmp_path):
    from onebox.lock import _declaration_files

    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "base.txt").write_text("django\n")
    (tmp_path / "requirements" / "production.txt").write_text("-r base.txt\n")
    files = _declaration_files(tmp_path, "requirements/production.txt")
    assert tmp_path / "requirements" / "base.txt" in files


def test_a_cached_lock_keeps_its_note(tmp_path, monkeypatch):
    """Warm or cold, the same lock and the same note (a driver added for the engine):
    what a deploy says must not depend on whether an earlier run filled the cache."""
    from onebox import lock as locking

    made = []

    def fake_lock(root, source, python_version, tested):
        made.append(source)
        return locking.Lock(text="django==5.2.8\n", packages=[])

    monkeypatch.setattr(locking, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(locking, "_lock", fake_lock)
    monkeypatch.setattr(locking, "tested_versions", lambda root: "")
    monkeypatch.setattr(
        locking, "with_requirement", lambda text, requirement, python, root: text + "psycopg==3.2\n"
    )
    (tmp_path / "requirements.txt").write_text("django\n")
    cold = locking.lock(tmp_path, "requirements.txt", "3.11", "postgresql")
    warm = locking.lock(tmp_path, "requirements.txt", "3.11", "postgresql")
    assert made == ["requirements.txt"]  # the second came from the cache
    assert (warm.text, warm.note) == (cold.text, cold.note)
    assert "added psycopg" in warm.note
