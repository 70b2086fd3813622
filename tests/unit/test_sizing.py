"""Workers and threads from the server's cores and memory (agent/sizing.py)."""

import pytest

from onebox.agent import sizing
from onebox.views import serving_lines

UNSET = {"workers": None, "threads": None, "worker_class": None, "asgi": False}


@pytest.mark.parametrize(
    ("cpus", "mib", "workers"),
    [
        (1, 512, 1),  # a 512 MiB VPS: one worker is what fits beside the system
        (1, 1024, 2),  # one core still gets two (a stuck worker leaves one serving)
        (2, 2048, 2),
        (4, 1024, 4),
        (8, 1024, 4),  # memory caps it: (1024 - 300) // 150
        (8, 16384, 8),
    ],
)
def test_workers_follow_cores_within_memory(cpus, mib, workers):
    settled = sizing.settle(UNSET, cpus=cpus, mib=mib)
    assert settled["workers"] == workers
    assert settled["threads"] == sizing.THREADS and settled["worker_class"] == "gthread"
    assert settled["derived"] == ["workers", "threads"]


def test_what_the_config_fixes_wins():
    settled = sizing.settle({**UNSET, "workers": 3, "threads": 8}, cpus=64, mib=1 << 16)
    assert (settled["workers"], settled["threads"], settled["derived"]) == (3, 8, [])


def test_sync_and_asgi_workers_get_no_threads():
    sync = sizing.settle({**UNSET, "worker_class": "sync"}, cpus=2, mib=4096)
    assert (sync["worker_class"], sync["threads"]) == ("sync", 1)
    asgi = sizing.settle({**UNSET, "asgi": True}, cpus=2, mib=4096)
    assert asgi["worker_class"] == "uvicorn_worker.UvicornWorker" and asgi["threads"] == 1


def test_release_env_round_trip():
    values = sizing.release_values(sizing.settle(UNSET, cpus=2, mib=4096))
    assert values == {
        "ONEBOX_WORKERS": "2",
        "ONEBOX_THREADS": "4",
        "ONEBOX_WORKER_CLASS": "gthread",
    }
    assert sizing.of_release(values) == {"workers": 2, "threads": 4, "worker_class": "gthread"}
    assert sizing.of_release({"DJANGO_SETTINGS_MODULE": "x"}) is None  # an older release


def test_memory_reads_the_container_limit_when_lower(tmp_path):
    meminfo, limit = tmp_path / "meminfo", tmp_path / "memory.max"
    meminfo.write_text("MemTotal:       24683452 kB\nMemFree: 1 kB\n")
    limit.write_text("max\n")
    assert sizing.memory_mib(meminfo, limit) == 24104
    limit.write_text(f"{512 << 20}\n")
    assert sizing.memory_mib(meminfo, limit) == 512
    assert sizing.memory_mib(meminfo, tmp_path / "absent") == 24104


def test_status_line():
    line = serving_lines({"workers": 2, "threads": 4, "worker_class": "gthread", "cores": 2,
                          "memory_mib": 2048})  # fmt: skip
    assert line == ["workers  2 x 4 threads (gthread; server: 2 cores, 2.0 GiB)"]
    assert serving_lines({"cores": 2, "memory_mib": 2048}) == []  # nothing deployed yet


def test_the_agent_asks_the_path_the_release_answers():
    from onebox.agent import switch, wsgi_health

    assert switch.MIGRATIONS_PATH == wsgi_health.MIGRATIONS_PATH


def test_a_standby_is_kept_only_where_memory_stays_free(monkeypatch, tmp_path):
    from onebox.agent import standby
    from onebox.agent.paths import AppPaths

    paths = AppPaths("shop")
    monkeypatch.setattr(standby, "unit_mib", lambda unit: 88)
    monkeypatch.setattr(standby, "memory_mib", lambda: 1024)
    monkeypatch.setattr(standby, "available_mib", lambda: 150)
    kept, why = standby.decide(paths, "auto", "blue")
    assert not kept and "too small: 150 MiB of 1024 MiB would stay free" in why
    assert standby.decide(paths, True, "blue")[0]  # asked for: kept all the same
    assert standby.decide(paths, False, "blue") == (False, "[deploy] standby = false")
    monkeypatch.setattr(standby, "available_mib", lambda: 700)
    assert standby.decide(paths, "auto", "blue") == (True, "88 MiB; 700 MiB of 1024 MiB free")
    asgi = standby.decide(paths, True, "blue", asgi=True)
    assert not asgi[0] and "websockets" in asgi[1]


def test_available_memory_within_a_container_limit(tmp_path):
    from onebox.agent import standby

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 24683452 kB\nMemAvailable: 23000000 kB\n")
    cgroup = tmp_path / "cg"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text(f"{1024 << 20}\n")
    (cgroup / "memory.current").write_text(f"{900 << 20}\n")
    (cgroup / "memory.stat").write_text(f"anon 1\ninactive_file {100 << 20}\nactive_file 5\n")
    assert standby.available_mib(meminfo, cgroup) == 1024 - 900 + 100
    (cgroup / "memory.max").write_text("max\n")
    assert standby.available_mib(meminfo, cgroup) == 23000000 // 1024
