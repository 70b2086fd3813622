"""How many gunicorn workers and threads the app gets, from the server's cores and memory.

gunicorn's own default is one sync worker: one request at a time, and every answer
closes its connection, so the proxy opens a new one per request (measured: 1.2-1.4 ms of
Caddy's CPU per request, most of the proxy's cost). onebox's default is the gthread
worker: each process serves several requests at once on threads (Django views mostly
wait on the database) and keeps its connections to the proxy open.

What is settled here goes into each release's release.env (ONEBOX_WORKERS,
ONEBOX_THREADS, ONEBOX_WORKER_CLASS), which the slot unit's command line reads: a
rollback runs an older release as it was sized then.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

THREADS = 4  # per gthread worker: enough for views waiting on the database, little GIL fight
WORKER_MIB = 150  # what one Django worker is budgeted, to the first request and some growth
RESERVED_MIB = 300  # the system, the proxy and a small database, before any worker
# Seconds the proxy keeps an idle connection to gunicorn (whose --keep-alive is longer):
# also how long a switch waits for the old release's idle connections to go.
UPSTREAM_KEEPALIVE = 2
CGROUP_LIMIT = Path("/sys/fs/cgroup/memory.max")


def cores() -> int:
    """The cores this server lets onebox use (a container's CPU affinity included)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def memory_mib(meminfo: Path = Path("/proc/meminfo"), limit: Path = CGROUP_LIMIT) -> int:
    """The server's memory, or the container's limit when that is lower."""
    total = 0
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            total = int(line.split()[1]) // 1024
    try:
        text = limit.read_text().strip()
    except OSError:
        return total
    return min(total, int(text) >> 20) if text.isdigit() else total


def default_workers(cpus: int, mib: int) -> int:
    """One worker per core, at least two (a crashed or stuck worker leaves one serving),
    and never more than the memory holds beside what the server itself needs."""
    by_memory = max(1, (mib - RESERVED_MIB) // WORKER_MIB)
    return max(1, min(max(2, cpus), by_memory))


def settle(wanted: dict[str, Any], cpus: int | None = None, mib: int | None = None) -> dict:
    """The workers, threads and class for this server: what onebox.toml fixed, the rest
    derived. `wanted`: [app] workers, threads, worker_class (None: not set), asgi."""
    cpus = cores() if cpus is None else cpus
    mib = memory_mib() if mib is None else mib
    if wanted.get("asgi"):
        worker_class = "uvicorn_worker.UvicornWorker"
    else:
        worker_class = wanted.get("worker_class") or "gthread"
    threaded = worker_class == "gthread"
    threads = (wanted.get("threads") or THREADS) if threaded else 1
    workers = wanted.get("workers") or default_workers(cpus, mib)
    derived = [key for key in ("workers", "threads") if not wanted.get(key)]
    return {
        "workers": workers,
        "threads": threads,
        "worker_class": worker_class,
        "derived": derived if threaded else [k for k in derived if k == "workers"],
        "cores": cpus,
        "memory_mib": mib,
    }


def release_values(settled: dict[str, Any]) -> dict[str, str]:
    """The release.env entries the slot unit's gunicorn command line is built from."""
    return {
        "ONEBOX_WORKERS": str(settled["workers"]),
        "ONEBOX_THREADS": str(settled["threads"]),
        "ONEBOX_WORKER_CLASS": settled["worker_class"],
    }


def of_release(values: dict[str, str]) -> dict[str, Any] | None:
    """What a release was sized with, from its release.env (None: older than sizing)."""
    if "ONEBOX_WORKERS" not in values:
        return None
    return {
        "workers": int(values["ONEBOX_WORKERS"]),
        "threads": int(values.get("ONEBOX_THREADS", "1")),
        "worker_class": values.get("ONEBOX_WORKER_CLASS", "sync"),
    }
