"""The client's half of [processes] and [schedule]: what a deploy sends about them.

Each release carries its background: the commands (as argv) and the systemd units that
run them, rendered here from templates the project may override. The server installs a
release's units when its processes move onto it (agent/background.py), so a rollback
brings back the commands and units of the release it returns to.
"""

from __future__ import annotations

from onebox.config import Project
from onebox.templating import render

# The services a background command may need up before it starts.
ENGINE_UNITS = {"mysql": "mariadb.service", "postgresql": "postgresql.service"}


def request_part(project: Project, context: dict[str, object]) -> dict[str, object]:
    """{"processes": {...}, "schedules": {...}, "units": {file name: text}} for a deploy."""
    cfg = project.config
    app = cfg.app.name
    after = [ENGINE_UNITS[cfg.database.engine]] if cfg.database.engine in ENGINE_UNITS else []
    if cfg.database.url:
        after = []
    if cfg.redis:
        after.append("redis-server.service")
    base = {**context, "after": after}
    processes, schedules, units = {}, {}, {}
    for name, process in cfg.processes.items():
        processes[name] = {
            "argv": process.argv,
            "replicas": process.replicas,
            "stop_timeout": process.stop_timeout,
        }
        units[f"onebox-{app}-{name}@.service"] = render(
            "process.service.j2",
            project.root,
            **base,
            name=name,
            stop_signal=process.stop_signal,
            stop_timeout=process.stop_timeout,
        )
    for name, schedule in cfg.schedule.items():
        schedules[name] = {"argv": schedule.argv, "calendar": schedule.calendar}
        values = {**base, "name": name, "timeout": schedule.timeout}
        units[f"onebox-{app}-{name}.service"] = render(
            "schedule.service.j2", project.root, **values
        )
        units[f"onebox-{app}-{name}.timer"] = render(
            "schedule.timer.j2",
            project.root,
            **values,
            when=schedule.when,
            calendar=schedule.calendar,
        )
    return {"processes": processes, "schedules": schedules, "units": units}
