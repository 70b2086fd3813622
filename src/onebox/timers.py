"""When things run: systemd calendar expressions, and the cron forms users already know.

`[backup] schedule` and `[schedule] NAME.when` take a systemd OnCalendar expression
("daily", "Mon..Fri *-*-* 09:00:00") or a five-field cron line ("*/15 * * * *",
"@hourly"), which is converted here. Checked by shape at config time, and exactly by
`systemd-analyze calendar` on the server before a timer changes.
"""

from __future__ import annotations

import re

CALENDAR_WORDS = {
    "minutely", "hourly", "daily", "monthly", "weekly", "yearly", "annually",
    "quarterly", "semiannually", "off",
}  # fmt: skip
WEEKDAY = r"(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*"
CALENDAR_PARTS = (
    re.compile(rf"{WEEKDAY}(?:\.\.{WEEKDAY})?(?:,{WEEKDAY}(?:\.\.{WEEKDAY})?)*", re.I),
    re.compile(r"[0-9*,./~]+-[0-9*,./]+(?:-[0-9*,./~]+)?"),  # a date: [Y-]M-D
    re.compile(r"[0-9*,./]+:[0-9*,./]+(?::[0-9*,./]+)?"),  # a time: h:m[:s]
    re.compile(r"UTC|[A-Za-z]+/[A-Za-z_]+(?:/[A-Za-z_]+)?"),  # a time zone
)


def is_calendar(value: str) -> bool:
    """A systemd OnCalendar expression, by its shape (the server checks it exactly)."""
    if value.lower() in CALENDAR_WORDS:
        return True
    parts = value.split()
    if not parts or len(parts) > 4:
        return False
    kinds = []
    for part in parts:
        kind = next((i for i, p in enumerate(CALENDAR_PARTS) if p.fullmatch(part)), None)
        if kind is None:
            return False
        kinds.append(kind)
    return kinds == sorted(kinds) and len(set(kinds)) == len(kinds) and kinds != [3]


class CronError(ValueError):
    pass


# cron's @words, as systemd says them (cron's week starts on Sunday, systemd's "weekly"
# on Monday: spelled out so that the day stays cron's).
CRON_WORDS = {
    "@yearly": "*-01-01 00:00:00",
    "@annually": "*-01-01 00:00:00",
    "@monthly": "*-*-01 00:00:00",
    "@weekly": "Sun *-*-* 00:00:00",
    "@daily": "*-*-* 00:00:00",
    "@midnight": "*-*-* 00:00:00",
    "@hourly": "*-*-* *:00:00",
}
DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
# (name, lowest, highest) of cron's five fields
FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
          ("day of week", 0, 7))  # fmt: skip


def looks_like_cron(value: str) -> bool:
    return value.startswith("@") or len(value.split()) == 5


def to_calendar(value: str) -> str:
    """A systemd calendar expression for `value`: one already, or a cron line converted.

    Raises ValueError with what is wrong, in words a cron user reads."""
    text = " ".join(value.split())
    if not looks_like_cron(text):
        if not is_calendar(text):
            raise ValueError(
                f"{value!r} is neither a cron line nor a systemd calendar expression: use one "
                'like "*/15 * * * *", "0 3 * * *", "@daily", "daily" or "Mon *-*-* 09:00:00"'
            )
        return text
    if text.startswith("@"):
        if text == "@reboot":
            raise ValueError("@reboot is not a schedule: a command that must keep running "
                             "belongs in [processes]")  # fmt: skip
        if text not in CRON_WORDS:
            raise ValueError(f"{value!r}: cron knows {', '.join(CRON_WORDS)}")
        return CRON_WORDS[text]
    minute, hour, dom, month, dow = text.split()
    if dom != "*" and dow != "*":
        # cron runs when EITHER matches; systemd would run only when both do.
        raise ValueError(
            f"{value!r} sets both a day of the month and a day of the week, which cron reads "
            "as either one: write two schedules, one for each"
        )
    values = [
        _field(part, *spec)
        for part, spec in zip((minute, hour, dom, month), FIELDS[:4], strict=True)
    ]
    days = "" if dow == "*" else _weekdays(dow) + " "
    return f"{days}*-{values[3]}-{values[2]} {values[1]}:{values[0]}:00"


def _numbers(part: str, name: str, low: int, high: int) -> list[int]:
    """The values one comma-separated item of a cron field stands for."""
    step = 1
    if "/" in part:
        part, _, every = part.partition("/")
        if not every.isdigit() or int(every) == 0:
            raise CronError(f"the {name} step {every!r} must be a number above 0")
        step = int(every)
    if part == "*":
        start, end = low, high
    else:
        start_text, _, end_text = part.partition("-")
        start = _number(start_text, name, low, high)
        end = _number(end_text, name, low, high) if end_text else (high if step > 1 else start)
        if end < start:
            raise CronError(f"the {name} range {part!r} runs backwards")
    return list(range(start, end + 1, step))


def _number(text: str, name: str, low: int, high: int) -> int:
    if name == "month" and text.lower()[:3] in MONTHS and len(text) == 3:
        return MONTHS.index(text.lower()) + 1
    if name == "day of week" and text.capitalize() in DAYS:
        return DAYS.index(text.capitalize())
    if not text.isdigit() or not low <= int(text) <= high:
        raise CronError(f"the {name} {text!r} must be a number from {low} to {high}")
    return int(text)


def _field(text: str, name: str, low: int, high: int) -> str:
    if text == "*":
        return "*"
    try:
        if re.fullmatch(r"\*/\d+", text):  # every N, from the field's start
            every = int(text[2:])
            if every == 0:
                raise CronError(f"the {name} step must be a number above 0")
            return f"{low:02d}/{every}" if name in ("minute", "hour") else f"{low}/{every}"
        found = sorted({n for part in text.split(",") for n in _numbers(part, name, low, high)})
    except CronError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    return ",".join(f"{n:02d}" for n in found)


def _weekdays(text: str) -> str:
    try:
        found = {n % 7 for part in text.split(",") for n in _numbers(part, "day of week", 0, 7)}
    except CronError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    # Monday first, as systemd lists them; Sunday (0 or 7) last
    return ",".join(DAYS[n] for n in sorted(found, key=lambda n: (n + 6) % 7))
