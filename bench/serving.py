#!/usr/bin/env python3
"""Serving speed: onebox's Caddy -> gunicorn beside Apache + mod_wsgi and gunicorn alone.

One Debian 12 practice server; examples/mvp deployed by onebox (SQLite, 200 guestbook
entries: its home page reads 50 of them and renders a template). The benchmark then sets
up, on the same server and from the same release (its code, virtualenv, release.env and
secrets, so the same Django settings and database):

- Apache 2.4 + mod_wsgi in daemon mode, as a classic site has it: TLS on port 8443 (a
  self-signed certificate), keep-alive on, static files through `Alias`, an access log,
  the daemon given the processes and threads onebox's gunicorn has;
- gunicorn alone: the same workers and threads, plain HTTP on port 8000, no proxy, no
  sandbox and no access log (as onebox's slots): the floor under any proxy (the home
  page only: it serves no static files).

Each round runs wrk (Debian's, on this machine) against each stack in turn, interleaved:
16 kept-alive connections, 2 threads, --seconds each, over HTTPS where the stack has it.
No request asks for compression (no Accept-Encoding), so none is compressed. CPU per
request is read from /proc for each process group (its unit's cgroup: Caddy, the
slot, apache2 with its mod_wsgi daemons, gunicorn alone); memory (RSS and PSS) too,
for the same groups, idle after a warm-up. Prints medians with min/max over the
rounds, the ratios against Apache + mod_wsgi, and the host's load average. Needs root.

    uv run python bench/serving.py --rounds 8 --seconds 5
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import PracticeServer, example_project, onebox  # noqa: E402

APP = "mvp"
CURRENT = f"/srv/{APP}/current"
APACHE_PORT, GUNICORN_PORT = 8443, 8000

APACHE_SITE = f"""Listen {APACHE_PORT}
<VirtualHost *:{APACHE_PORT}>
    Protocols h2 http/1.1
    SSLEngine on
    SSLCertificateFile /etc/ssl/certs/bench.pem
    SSLCertificateKeyFile /etc/ssl/private/bench.key
    KeepAlive On
    MaxKeepAliveRequests 0
    Alias /static/ {CURRENT}/.onebox/static/
    <Directory {CURRENT}/.onebox/static>
        Require all granted
    </Directory>
    WSGIDaemonProcess bench user={APP} group={APP} python-home={CURRENT}/.venv \\
        python-path={CURRENT} processes=__PROCESSES__ threads=__THREADS__
    WSGIProcessGroup bench
    WSGIApplicationGroup %{{GLOBAL}}
    WSGIScriptAlias / /etc/apache2/bench.wsgi process-group=bench application-group=%{{GLOBAL}}
    <Files bench.wsgi>
        Require all granted
    </Files>
    <Directory /etc/apache2>
        Require all granted
    </Directory>
    CustomLog ${{APACHE_LOG_DIR}}/bench_access.log combined
</VirtualHost>
"""
# mod_wsgi has no EnvironmentFile: load the release's environment files (as systemd does
# for onebox's slots) before the app's own WSGI module is imported.
APACHE_WSGI = f"""import os
for name in ("{CURRENT}/.onebox/release.env", "{CURRENT}/.onebox/env-refs.env",
             "/etc/apache2/bench.env"):
    if os.path.exists(name):
        for line in open(name):
            key, sep, value = line.rstrip("\\n").partition("=")
            if sep and not key.startswith("#"):
                if value[:1] == value[-1:] == '"':  # (onebox's quoting, as systemd reads it)
                    value = value[1:-1].replace('\\\\"', '"').replace('\\\\\\\\', '\\\\')
                os.environ[key] = value
from mvp.wsgi import application
"""

SEED = (
    "from guestbook.models import Entry; "
    "Entry.objects.bulk_create(Entry(name=f'guest {i}', message='hello ' * 40) "
    "for i in range(200))"
)


def root(server: PracticeServer, command: str) -> str:
    """A command as root on the server; its output."""
    result = subprocess.run([*server.base, command], capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        sys.exit(f"on the server, {command!r} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def sizing(server: PracticeServer) -> tuple[int, int]:
    env = dict(
        line.partition("=")[::2]
        for line in root(server, f"cat {CURRENT}/.onebox/release.env").splitlines()
        if "=" in line and not line.startswith("#")
    )
    return int(env["ONEBOX_WORKERS"].strip('"')), int(env["ONEBOX_THREADS"].strip('"'))


def set_up_apache(server: PracticeServer, processes: int, threads: int) -> None:
    site = APACHE_SITE.replace("__PROCESSES__", str(processes))
    site = site.replace("__THREADS__", str(threads))
    root(
        server,
        # (policy-rc.d: installed stopped; Caddy holds ports 80 and 443)
        "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && "
        "chmod +x /usr/sbin/policy-rc.d && "
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
        "apache2 libapache2-mod-wsgi-py3 ssl-cert >/dev/null && rm /usr/sbin/policy-rc.d && "
        "openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=bench "
        "-keyout /etc/ssl/private/bench.key -out /etc/ssl/certs/bench.pem 2>/dev/null && "
        "echo > /etc/apache2/ports.conf && (a2dissite -q 000-default || true) && "
        "a2enmod -q ssl wsgi http2 >/dev/null && adduser -q www-data " + APP + " && "
        # the secrets, readable by the mod_wsgi daemon's user (onebox's are root's only,
        # read by systemd): on this throw-away server only
        f"install -m 0640 -g {APP} /etc/onebox/{APP}.env /etc/apache2/bench.env",
    )
    subprocess.run(
        [*server.base, "cat > /etc/apache2/sites-available/bench.conf"],
        input=site,
        text=True,
        check=True,
    )
    subprocess.run(
        [*server.base, "cat > /etc/apache2/bench.wsgi"], input=APACHE_WSGI, text=True, check=True
    )
    root(server, "a2ensite -q bench && apachectl configtest 2>&1 && systemctl restart apache2")


def set_up_gunicorn(server: PracticeServer, workers: int, threads: int) -> None:
    root(
        server,
        "systemctl stop bench-gunicorn 2>/dev/null; "  # (--server: from an earlier run)
        f"systemd-run --quiet --unit bench-gunicorn --uid {APP} --gid {APP} "
        f"--working-directory {CURRENT} "
        f"-p EnvironmentFile={CURRENT}/.onebox/release.env "
        f"-p EnvironmentFile=-{CURRENT}/.onebox/env-refs.env "
        f"-p EnvironmentFile=/etc/onebox/{APP}.env "
        f"{CURRENT}/.venv/bin/gunicorn mvp.wsgi:application --bind 0.0.0.0:{GUNICORN_PORT} "
        # no access log, as onebox's slots (Caddy keeps it there)
        f"--workers {workers} --threads {threads} --worker-class gthread --keep-alive 10",
    )


def open_ports(server: PracticeServer) -> None:
    """The benchmark's two ports through onebox's firewall (the server is thrown away)."""
    root(server, f"nft insert rule inet onebox input tcp dport {{ {APACHE_PORT}, "
         f"{GUNICORN_PORT} }} accept")  # fmt: skip


# The processes of a unit: its cgroup's, in whichever hierarchy this system has (these
# practice servers run on a cgroup v1 host, where systemd keeps no CPU or memory figures).
PIDS = r"""pids() {{
  group=$(systemctl show -p ControlGroup --value $1)
  for base in /sys/fs/cgroup/unified /sys/fs/cgroup /sys/fs/cgroup/systemd; do
    if [ -n "$group" ] && [ -f "$base$group/cgroup.procs" ]; then
      cat "$base$group/cgroup.procs"; return
    fi
  done
}}
"""
# CPU ticks (utime, stime and the reaped children's) of each unit's processes.
CPU = (
    PIDS
    + r"""for unit in {units}; do
  ticks=0
  for pid in $(pids $unit); do
    t=$(sed 's/.*) //' /proc/$pid/stat 2>/dev/null | awk '{{print $12+$13+$14+$15}}')
    ticks=$((ticks + ${{t:-0}}))
  done
  echo $unit $ticks
done
getconf CLK_TCK"""
)
MEMORY = PIDS + (
    r"""for unit in {units}; do
  for pid in $(pids $unit); do cat /proc/$pid/smaps_rollup 2>/dev/null; done |
    awk -v unit=$unit '/^Rss:/{{r+=$2}} /^Pss:/{{p+=$2}} END{{print unit, r+0, p+0}}'
done
cat /proc/[0-9]*/smaps_rollup 2>/dev/null | awk '/^Rss:/{{r+=$2}} END{{print "server", r+0, 0}}'
"""
)


def cpu_ns(server: PracticeServer, units: list[str]) -> dict[str, int]:
    """Nanoseconds of CPU each unit's processes have used so far."""
    lines = root(server, CPU.format(units=" ".join(units))).split("\n")
    *rows, tick = [line for line in lines if line.strip()]
    per_tick = 1_000_000_000 // int(tick)
    return {unit: int(ticks) * per_tick for unit, ticks in (row.split() for row in rows)}


def memory(server: PracticeServer, units: list[str]) -> dict[str, tuple[float, float]]:
    """{unit: (RSS MiB, PSS MiB)}, and "server": every process's RSS summed."""
    out = root(server, MEMORY.format(units=" ".join(units)))
    return {
        name: (int(rss) / 1024, int(pss) / 1024)
        for name, rss, pss in (line.split() for line in out.splitlines())
    }


def wrk(url: str, seconds: float, connections: int, headers: list[str]) -> dict[str, float]:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    for header in headers:
        command += ["-H", header]
    out = subprocess.run([*command, url], capture_output=True, text=True, timeout=seconds + 60)
    text = out.stdout
    found = re.search(r"(\d+) requests in", text)
    if not found:
        sys.exit(f"wrk {url} failed:\n{text}\n{out.stderr}")
    requests = int(found.group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       text)  # fmt: skip
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", text)
    scale = {"us": 0.001, "ms": 1, "s": 1000}
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
        "requests": requests,
        "bad": int(bad.group(1)) if bad else 0,
        "errors": sum(int(x) for x in errors.groups()) if errors else 0,
        "p50": float(p50.group(1)) * scale[p50.group(2)] if p50 else 0.0,
    }


def h2load(url: str, seconds: float, connections: int, headers: list[str]) -> dict[str, float]:
    """nghttp2's h2load over HTTP/2: one stream at a time per connection, as wrk's."""
    command = ["h2load", f"-c{connections}", "-t2", "-m1", f"-D{seconds:g}", "--warm-up-time=0"]
    for header in headers:
        command += ["-H", header]
    out = subprocess.run([*command, url], capture_output=True, text=True, timeout=seconds + 60)
    text = out.stdout
    done = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", text)
    rate = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text)
    if not done or not rate or "Application protocol: h2" not in text:
        sys.exit(f"h2load {url} failed:\n{text}\n{out.stderr}")
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx", text)
    good = int(codes.group(1)) + int(codes.group(2)) if codes else 0
    median = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", text)
    scale = {"us": 0.001, "ms": 1, "s": 1000}
    return {
        "rps": float(rate.group(1)),
        "requests": int(done.group(2)),
        "bad": max(0, int(done.group(2)) - good),
        "errors": int(done.group(1)) - int(done.group(3)),
        # (h2load prints min, max, mean: the mean stands in for the median here)
        "p50": float(median.group(1)) * scale[median.group(2)] if median else 0.0,
    }


def static_path(address: str) -> str:
    """The hashed URL of the guestbook's stylesheet, from the home page."""
    page = subprocess.run(
        ["curl", "-sk", f"https://{address}/"], capture_output=True, text=True, check=True
    ).stdout
    return re.search(r'href="(/static/[^"]+\.css)"', page).group(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--server", help="an existing practice server with examples/mvp deployed (kept)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the practice server")
    args = parser.parse_args()
    if not (shutil.which("wrk") and shutil.which("h2load")):
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk", "nghttp2-client"], check=True)
    load_before = os.getloadavg()
    if args.server:  # (for working on the benchmark itself)
        run(PracticeServer(args.server, create=False), args)
        return
    server = PracticeServer(f"bserve-{os.getpid()}")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            project = example_project(Path(tmp) / APP, server)
            onebox("setup", cwd=project)
            onebox("deploy", cwd=project)
            onebox("manage", "--", "shell", "-c", SEED, cwd=project)
            run(server, args)
    finally:
        if args.keep:
            print(f"kept practice server {server.name}")
        else:
            server.destroy()
        print(f"\nload average before: {' '.join(f'{x:.2f}' for x in load_before)}")
        print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def run(server: PracticeServer, args: argparse.Namespace) -> None:
    workers, threads = sizing(server)
    slot = root(server, f"readlink /srv/{APP}/slots/live").strip() or "blue"
    open_ports(server)
    set_up_apache(server, workers, threads)
    set_up_gunicorn(server, workers, threads)
    address = server.address
    static = static_path(address)
    proto = ["X-Forwarded-Proto: https"]  # (gunicorn alone: Django's SECURE_PROXY_SSL_HEADER)
    onebox_units = ["caddy", f"onebox-{APP}@{slot}"]
    stacks = {  # name: (URL, its process groups, extra headers, load tool)
        "onebox (Caddy -> gunicorn)": (f"https://{address}", onebox_units, [], wrk),
        "Apache + mod_wsgi": (f"https://{address}:{APACHE_PORT}", ["apache2"], [], wrk),
        "gunicorn alone": (f"http://{address}:{GUNICORN_PORT}", ["bench-gunicorn"], proto, wrk),
        "onebox, HTTP/2": (f"https://{address}", onebox_units, [], h2load),
        "Apache + mod_wsgi, HTTP/2": (
            f"https://{address}:{APACHE_PORT}",
            ["apache2"],
            [],
            h2load,
        ),
    }
    pages = {"home page (database)": "/", "static file": static}
    all_units = list(dict.fromkeys(unit for _, units, _, _ in stacks.values() for unit in units))
    for url, _, headers, tool in stacks.values():  # warm-up: every worker imports Django
        for path in pages.values():
            tool(url + path, 2, args.connections, headers)
    idle = memory(server, all_units)
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for _ in range(args.rounds):
        for page, path in pages.items():
            for stack, (url, units, headers, tool) in stacks.items():
                if stack == "gunicorn alone" and path != "/":
                    continue
                before = cpu_ns(server, units)
                figures = tool(url + path, args.seconds, args.connections, headers)
                after = cpu_ns(server, units)
                for unit in units:
                    figures[f"cpu {unit}"] = (after[unit] - before[unit]) / figures["requests"]
                figures["cpu"] = sum(figures[f"cpu {unit}"] for unit in units)
                results.setdefault((page, stack), []).append(figures)
    print_results(results, args, workers, threads)
    print_memory(idle, stacks)


def spread(values: list[float], digits: int = 0) -> str:
    return (
        f"{statistics.median(values):.{digits}f} "
        f"({min(values):.{digits}f}-{max(values):.{digits}f})"
    )


def print_results(results: dict, args: argparse.Namespace, workers: int, threads: int) -> None:
    print(
        f"\n{args.rounds} rounds of {args.seconds:g} s per stack, interleaved; wrk -t2 "
        f"-c{args.connections}, kept-alive; {workers} workers x {threads} threads each; "
        "medians (min-max)"
    )
    print("| page | stack | req/s | p50 ms | CPU µs/request | of which | failed |")
    print("|---|---|---|---|---|---|---|")
    for (page, stack), runs in results.items():
        parts = [key for key in runs[0] if key.startswith("cpu ")]
        split = ", ".join(
            f"{key[4:]} {statistics.median(r[key] for r in runs) / 1000:.0f}" for key in parts
        )
        failed = sum(int(r["bad"] + r["errors"]) for r in runs)
        print(
            f"| {page} | {stack} | {spread([r['rps'] for r in runs])} | "
            f"{spread([r['p50'] for r in runs], 1)} | "
            f"{spread([r['cpu'] / 1000 for r in runs])} | {split} | {failed} |"
        )
    print("\nratios of the medians, against Apache + mod_wsgi")
    for page in dict.fromkeys(page for page, _ in results):
        base = results[(page, "Apache + mod_wsgi")]
        base_rps = statistics.median(r["rps"] for r in base)
        base_cpu = statistics.median(r["cpu"] for r in base)
        for (other_page, stack), runs in results.items():
            if other_page != page or stack == "Apache + mod_wsgi":
                continue
            rps = statistics.median(r["rps"] for r in runs) / base_rps
            cpu = statistics.median(r["cpu"] for r in runs) / base_cpu
            print(f"  {page}, {stack}: req/s {rps:.2f}x, CPU per request {cpu:.2f}x")


def print_memory(idle: dict[str, tuple[float, float]], stacks: dict) -> None:
    print("\nidle memory after the warm-up, MiB")
    print("| stack | RSS | PSS |")
    print("|---|---|---|")
    for stack, (_, units, _, tool) in stacks.items():
        if tool is h2load:
            continue
        rss = sum(idle[unit][0] for unit in units)
        pss = sum(idle[unit][1] for unit in units)
        print(f"| {stack} ({' + '.join(units)}) | {rss:.0f} | {pss:.0f} |")
    print(f"| the whole server, all three running (RSS summed) | {idle['server'][0]:.0f} | - |")


if __name__ == "__main__":
    main()
