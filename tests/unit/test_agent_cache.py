"""The entry's compiled copy of each shipped agent (entry_script.compiled_agent)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from onebox.agent import entry_script, launch


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache" / "agent"
    monkeypatch.setattr(entry_script, "AGENT_CACHE", str(folder))
    monkeypatch.setattr(entry_script.os, "geteuid", lambda: 0)
    return folder


def shipped(tmp_path: Path, name: str = "work", text: str = "VALUE = 1\n") -> Path:
    """A workdir as the entry unpacks it: the agent's sources and the request."""
    workdir = tmp_path / name
    (workdir / "onebox_agent").mkdir(parents=True)
    (workdir / "onebox_agent" / "__init__.py").write_text("")
    (workdir / "onebox_agent" / "values.py").write_text(text)
    (workdir / "request.json").write_text("{}")
    return workdir


def test_the_first_run_compiles_the_agent_and_the_next_finds_it(cache: Path, tmp_path: Path):
    home = entry_script.compiled_agent(str(shipped(tmp_path)))
    assert home is not None and Path(home).parent == cache
    compiled = sorted(p.name for p in (Path(home) / "onebox_agent" / "__pycache__").iterdir())
    assert [name.split(".")[0] for name in compiled] == ["__init__", "values"]
    assert oct(cache.stat().st_mode & 0o777) == "0o700"
    assert entry_script.compiled_agent(str(shipped(tmp_path, "again"))) == home
    assert [p.name for p in cache.iterdir()] == [Path(home).name]  # no temp folder left


def test_the_compiled_copy_is_what_python_imports(cache: Path, tmp_path: Path):
    home = entry_script.compiled_agent(str(shipped(tmp_path, text="VALUE = 42\n")))
    assert home is not None
    script = "import onebox_agent.values as v, sys; print(v.VALUE, v.__cached__)"
    out = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {home!r}); {script}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out[0] == "42" and Path(out[1]).is_file()


def test_other_sources_get_a_copy_of_their_own(cache: Path, tmp_path: Path):
    first = entry_script.compiled_agent(str(shipped(tmp_path, "a", "VALUE = 1\n")))
    second = entry_script.compiled_agent(str(shipped(tmp_path, "b", "VALUE = 2\n")))
    assert first and second and first != second
    assert (Path(second) / "onebox_agent" / "values.py").read_text() == "VALUE = 2\n"


def test_only_the_sources_are_copied(cache: Path, tmp_path: Path):
    workdir = shipped(tmp_path)
    (workdir / "onebox_agent" / "notes.txt").write_text("not the agent's")
    home = entry_script.compiled_agent(str(workdir))
    assert home is not None and not (Path(home) / "onebox_agent" / "notes.txt").exists()


def test_copies_unused_for_a_week_are_removed_and_the_current_one_kept(cache: Path, tmp_path: Path):
    current = entry_script.compiled_agent(str(shipped(tmp_path, "a", "VALUE = 1\n")))
    old = entry_script.compiled_agent(str(shipped(tmp_path, "b", "VALUE = 2\n")))
    recent = entry_script.compiled_agent(str(shipped(tmp_path, "c", "VALUE = 3\n")))
    assert current and old and recent
    (cache / ".new-abandoned").mkdir()
    (cache / ".new-in-progress").mkdir()
    eight_days, two_hours = time.time() - 8 * 86400, time.time() - 7200
    for path, when in [(current, eight_days), (old, eight_days)]:
        os.utime(path, (when, when))
    os.utime(cache / ".new-abandoned", (two_hours, two_hours))
    assert entry_script.compiled_agent(str(shipped(tmp_path, "d", "VALUE = 1\n"))) == current
    left = {p.name for p in cache.iterdir()}
    assert left == {Path(current).name, Path(recent).name, ".new-in-progress"}


def test_without_root_or_a_writable_cache_the_agent_runs_from_its_temp_dir(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    cache.parent.mkdir()
    cache.write_text("a file where the folder would be")
    assert entry_script.compiled_agent(str(shipped(tmp_path, "a"))) is None
    monkeypatch.setattr(entry_script.os, "geteuid", lambda: 1000)
    assert entry_script.compiled_agent(str(shipped(tmp_path, "b"))) is None


def test_a_copy_made_by_a_run_beside_this_one_is_taken(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    workdir = shipped(tmp_path)
    home = Path(cache) / entry_script._sources_hash(str(workdir / "onebox_agent"))
    real_rename = os.rename

    def beaten(src: str, dst: str) -> None:  # the other run renamed its copy in first
        Path(dst, "onebox_agent").mkdir(parents=True)
        real_rename(src, dst)

    monkeypatch.setattr(entry_script.os, "rename", beaten)
    assert entry_script.compiled_agent(str(workdir)) == str(home)
    assert [p.name for p in cache.iterdir()] == [home.name]


def test_the_detached_unit_imports_the_agent_from_where_the_entry_did(tmp_path: Path):
    package_parent = Path(launch.__file__).resolve().parent.parent
    run_dir = tmp_path / "run"
    assert launch.agent_path(package_parent, run_dir) == run_dir  # (moved with the run)
    assert launch.agent_path(tmp_path / "elsewhere", run_dir) == package_parent
