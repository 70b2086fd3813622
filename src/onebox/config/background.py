"""[processes], [schedule] and [services]: what runs beside the web app, and Redis."""

from __future__ import annotations

import re
import shlex
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from onebox.config.sections import _Section
from onebox.timers import to_calendar

SHELL_OPERATORS = {"&&", "||", "|", ";", "&", ">", ">>", "<", "2>", "2>&1", "$(", "`"}
PROCESS_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")
RESERVED_NAMES = {"backup", "verify", "web", "run", "manage"}
STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2")


def split_command(value: str) -> list[str]:
    """A process's or schedule's command line as argv. No shell runs it (so no operator
    means what it would in one): a command that needs one says so, `sh -c "..."`."""
    try:
        argv = shlex.split(value)
    except ValueError as exc:
        raise ValueError(f"cannot read the command {value!r}: {exc}") from None
    if not argv:
        raise ValueError("the command is empty")
    operators = [word for word in argv if word in SHELL_OPERATORS or word.startswith("$(")]
    if operators:
        raise ValueError(
            f"{operators[0]!r} in {value!r} would need a shell, and commands run without "
            f"one: write it as sh -c {shlex.quote(value)}"
        )
    return argv


class _Command(_Section):
    """A section whose `command` is run without a shell (see split_command)."""

    command: str

    @property
    def argv(self) -> list[str]:
        return split_command(self.command)

    @field_validator("command")
    @classmethod
    def _command(cls, value: str) -> str:
        split_command(value)
        return value


class ProcessConfig(_Command):
    """A long-running command ([processes]): a worker, a scheduler, a consumer."""

    # Copies of it (celery workers, say). A scheduler (celery beat) must stay at 1.
    replicas: Annotated[int, Field(ge=1, le=16)] = 1
    # The signal that asks it to stop gracefully (Celery: SIGTERM, a warm shutdown), and
    # the seconds it gets before it is killed.
    # (a Literal of the tuple, for pydantic: mypy wants its members spelled out)
    stop_signal: Literal[STOP_SIGNALS] = "SIGTERM"  # type: ignore[valid-type]
    stop_timeout: Annotated[int, Field(ge=1, le=3600)] = 30

    @model_validator(mode="after")
    def _one_scheduler(self) -> ProcessConfig:
        argv = self.argv
        if self.replicas > 1 and "beat" in argv and any("celery" in w for w in argv[:1]):
            raise ValueError(
                "celery beat must run once (two would send every periodic task twice): replicas = 1"
            )
        return self


class ScheduleConfig(_Command):
    """A command run on a timer ([schedule]): clearsessions, a nightly report."""

    # A systemd calendar expression ("daily", "Mon *-*-* 09:00:00") or a cron line
    # ("*/15 * * * *", "@hourly"), converted to the former.
    when: str
    # Seconds a run may take before it is stopped.
    timeout: Annotated[int, Field(ge=1, le=86400)] = 3600

    @property
    def calendar(self) -> str:
        return to_calendar(self.when)

    @field_validator("when")
    @classmethod
    def _when(cls, value: str) -> str:
        to_calendar(value)
        return value


def _background_names(value: dict[str, Any], what: str) -> dict[str, Any]:
    for name in value:
        if not PROCESS_NAME.fullmatch(name):
            raise ValueError(
                f"{name!r}: a {what} name is lowercase letters, digits and dashes, starting "
                "with a letter (it names a systemd unit)"
            )
        if name in RESERVED_NAMES:
            raise ValueError(f"{name!r} is a name onebox uses itself: choose another")
    return value


class RedisConfig(_Section):
    """Redis from Debian on the server, for this app ([services] redis)."""

    # cache: least recently used keys are evicted when it is full. broker (Celery's
    # queue): nothing is ever evicted (a full Redis refuses writes rather than drop a
    # queued task). Default: broker when a process runs celery, else cache.
    role: Literal["cache", "broker"] | None = None
    # Keep its data across restarts (append-only file on disk). Off: Redis holds only
    # what can be rebuilt (a cache, queued tasks of a queue that tolerates loss).
    persist: bool = False
    # Its memory limit, like "64mb"; default: from the server's memory (64-256 MB).
    maxmemory: str | None = None

    @field_validator("maxmemory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"\d{1,6}(kb|mb|gb)", value.lower()):
            raise ValueError('must be a size like "64mb" or "1gb"')
        return value.lower() if value else value


class ServicesConfig(_Section):
    # true, or { role = "broker", persist = false, maxmemory = "128mb" }
    redis: RedisConfig | None = None

    @field_validator("redis", mode="before")
    @classmethod
    def _redis(cls, value: Any) -> Any:
        if value is True:
            return {}
        if value is False:
            return None
        if not isinstance(value, dict):
            raise ValueError('must be true, false, or a table like { role = "broker" }')
        return value

    @property
    def redis_config(self) -> RedisConfig | None:
        return self.redis
