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
