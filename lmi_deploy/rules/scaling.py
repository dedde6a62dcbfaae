"""Scaling: autoscaling bounds, scheduled actions and scale-to-zero."""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterator
from datetime import datetime
from functools import cache

from lmi_deploy.rules.derive import Derived
from lmi_deploy.rules.registry import Example, rule
from lmi_deploy.rules.view import View

_CRON_FIELDS = (  # (name, allowed characters, numeric range) of Application Auto Scaling's six cron fields
    ("minutes", r"[0-9,*/-]+", (0, 59)),
    ("hours", r"[0-9,*/-]+", (0, 23)),
    ("day-of-month", r"[0-9,*/?LW-]+", (1, 31)),
    ("month", r"[0-9A-Za-z,*/-]+", (1, 12)),
    ("day-of-week", r"[0-9A-Za-z,*/?L#-]+", (1, 7)),
    ("year", r"[0-9,*/-]+", (1970, 2199)),
)
_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
_SCHEDULE = {"name": "night", "schedule": "cron(0 20 ? * MON-FRI *)", "min_instances": 1, "max_instances": 1}


def _at_or_rate_problem(expression: str) -> str | None:
    if expression.startswith("at("):
        try:
            datetime.strptime(expression[3:-1], "%Y-%m-%dT%H:%M:%S")
        except ValueError:
            return "at(...) takes one time as yyyy-mm-ddThh:mm:ss"
        return None
    match = _RATE.fullmatch(expression)
    if not match or int(match.group(1)) < 1:
        return "rate(...) takes a positive whole number and minute(s), hour(s) or day(s), e.g. rate(12 hours)"
    if (int(match.group(1)) == 1) != (not match.group(2).endswith("s")):
        return "rate(...) takes the singular unit for 1 and the plural otherwise, e.g. rate(1 day), rate(2 days)"
    return None


def schedule_problem(expression: str) -> str | None:
    """What is wrong with an Application Auto Scaling schedule expression, or None when it is valid."""
    if (expression.startswith("at(") and expression.endswith(")")) or expression.startswith("rate("):
        return _at_or_rate_problem(expression)
    if not (expression.startswith("cron(") and expression.endswith(")")):
        return (
            "is not a schedule expression; use e.g. cron(0 20 ? * MON-FRI *), rate(12 hours) or at(2030-01-31T08:00:00)"
        )
    fields = expression[5:-1].split()
    if len(fields) != len(_CRON_FIELDS):
        return (
            f"cron(...) takes 6 fields (minutes hours day-of-month month day-of-week year), got {len(fields)}; "
            "e.g. cron(0 20 ? * MON-FRI *)"
        )
    for value, (name, allowed, (low, high)) in zip(fields, _CRON_FIELDS, strict=True):
        if not re.fullmatch(allowed, value):
            return f"cron field {name}={value!r} has characters that field does not take"
        numbers = [int(n) for n in re.findall(r"\d+", value.split("/")[0])]  # an increment may exceed the range
        if any(not low <= n <= high for n in numbers):
            return f"cron field {name}={value!r} is outside {low}-{high}"
    if (fields[2] == "?") == (fields[4] == "?"):
        return "cron(...) needs '?' in exactly one of day-of-month and day-of-week, e.g. cron(0 20 ? * MON-FRI *)"
    return None


@cache
def timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones() | {"UTC"})


def _realtime(view: View) -> bool:
    return bool(getattr(view.config, "inference_mode", "realtime") == "realtime")


@rule(
    "LMI601",
    title="autoscaling_max_instances below instance_count",
    why="instance_count is the endpoint's minimum; a lower maximum cannot be applied.",
    fix="Raise autoscaling_max_instances, or lower instance_count.",
    example=Example(settings={"instance_count": "3", "autoscaling_max_instances": "2"}),
    needs=("config",),
)
def max_not_below_count(view: View, derived: Derived) -> Iterator[str]:
    c = view.config
    if c.autoscaling_max_instances is not None and c.autoscaling_max_instances < c.instance_count:
        yield (
            f"autoscaling_max_instances={c.autoscaling_max_instances} is below instance_count={c.instance_count} "
            "(the minimum): raise it, or lower instance_count"
        )


@rule(
    "LMI602",
    title="autoscaling_min_instances without autoscaling",
    why="A floor means nothing while autoscaling is off.",
    fix="Set autoscaling_max_instances too, or leave autoscaling_min_instances unset.",
    example=Example(settings={"autoscaling_min_instances": "1"}),
    needs=("config",),
)
def min_needs_autoscaling(view: View, derived: Derived) -> Iterator[str]:
    c = view.config
    if c.autoscaling_min_instances is not None and c.autoscaling_max_instances is None:
        yield (
            f"autoscaling_min_instances={c.autoscaling_min_instances} needs autoscaling: set "
            "autoscaling_max_instances too, or leave autoscaling_min_instances unset"
        )


@rule(
    "LMI603",
    title="autoscaling_min_instances above instance_count",
    why="The endpoint starts with instance_count; a higher floor contradicts it.",
    fix="Lower autoscaling_min_instances, or raise instance_count.",
    example=Example(settings={"autoscaling_min_instances": "3", "autoscaling_max_instances": "4"}),
    needs=("config",),
)
def min_not_above_count(view: View, derived: Derived) -> Iterator[str]:
    c = view.config
    low = c.autoscaling_min_instances
    if low is not None and c.autoscaling_max_instances is not None and low > c.instance_count:
        yield (
            f"autoscaling_min_instances={low} is above instance_count={c.instance_count} (what the endpoint starts "
            "with): lower it, or raise instance_count"
        )


@rule(
    "LMI604",
    title="Scheduled actions without autoscaling",
    why="Schedules change the bounds of autoscaling, which is off.",
    fix="Set autoscaling_max_instances (and autoscaling_min_instances), or remove the schedules.",
    example=Example(settings={"autoscaling_schedules": [_SCHEDULE]}),
    needs=("config",),
)
def schedules_need_autoscaling(view: View, derived: Derived) -> Iterator[str]:
    c = view.config
    if c.autoscaling_schedules and c.autoscaling_max_instances is None:
        yield (
            "autoscaling_schedules change the bounds of autoscaling, which is off: set autoscaling_max_instances "
            "(and autoscaling_min_instances), or remove the schedules"
        )


@rule(
    "LMI605",
    title="Two scheduled actions with one name",
    why="Application Auto Scaling names scheduled actions uniquely per target; the second replaces the first.",
    fix="Give each schedule its own name.",
    example=Example(settings={"autoscaling_max_instances": "2", "autoscaling_schedules": [_SCHEDULE, _SCHEDULE]}),
    needs=("config",),
)
def schedule_names_unique(view: View, derived: Derived) -> Iterator[str]:
    names = [s.name for s in view.config.autoscaling_schedules]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        yield f"autoscaling_schedules has two schedules named {duplicate!r}: give each its own name"


@rule(
    "LMI606",
    title="Invalid schedule expression",
    why="Application Auto Scaling refuses the scheduled action at deploy time.",
    fix="Use cron(m h dom mon dow year), rate(n unit) or at(yyyy-mm-ddThh:mm:ss).",
    example=Example(
        settings={
            "autoscaling_max_instances": "2",
            "autoscaling_schedules": [{**_SCHEDULE, "schedule": "cron(0 20 * * *)"}],
        }
    ),
    needs=("config",),
)
def schedule_expression_valid(view: View, derived: Derived) -> Iterator[str]:
    for schedule in view.config.autoscaling_schedules:
        problem = schedule_problem(schedule.schedule)
        if problem:
            yield f"autoscaling_schedules {schedule.name!r}: schedule={schedule.schedule!r} {problem}"


@rule(
    "LMI607",
    title="Unknown schedule time zone",
    why="Application Auto Scaling reads schedules in an IANA time zone and refuses others.",
    fix="Use an IANA time zone, e.g. UTC or Europe/Berlin.",
    example=Example(
        settings={"autoscaling_max_instances": "2", "autoscaling_schedules": [{**_SCHEDULE, "timezone": "CEST"}]}
    ),
    needs=("config",),
)
def schedule_timezone_known(view: View, derived: Derived) -> Iterator[str]:
    for schedule in view.config.autoscaling_schedules:
        if schedule.timezone not in timezones():
            yield (
                f"autoscaling_schedules {schedule.name!r}: timezone={schedule.timezone!r} is not an IANA time zone; "
                "use e.g. UTC, Europe/Berlin"
            )


@rule(
    "LMI608",
    title="A schedule's bounds out of order or above the autoscaling maximum",
    why="min_instances above max_instances is refused; a maximum above autoscaling_max_instances would run (and "
    "cost) more than the deployment allows.",
    fix="Correct the schedule's bounds, or raise autoscaling_max_instances.",
    example=Example(
        settings={"autoscaling_max_instances": "2", "autoscaling_schedules": [{**_SCHEDULE, "max_instances": 5}]}
    ),
    needs=("config",),
)
def schedule_bounds(view: View, derived: Derived) -> Iterator[str]:
    c = view.config
    for schedule in c.autoscaling_schedules:
        where = f"autoscaling_schedules {schedule.name!r}"
        if schedule.min_instances > schedule.max_instances:
            yield (
                f"{where}: min_instances={schedule.min_instances} is above max_instances={schedule.max_instances}; "
                "swap or correct them"
            )
        if c.autoscaling_max_instances is not None and schedule.max_instances > c.autoscaling_max_instances:
            yield (
                f"{where}: max_instances={schedule.max_instances} is above autoscaling_max_instances="
                f"{c.autoscaling_max_instances}, the most this deployment may run (and cost); raise "
                "autoscaling_max_instances or lower the schedule's"
            )


@rule(
    "LMI609",
    title="A real-time endpoint scaled to zero",
    why="Only asynchronous endpoints can scale to zero; a real-time endpoint without instances answers nothing.",
    fix="Use at least 1, or inference_mode=async.",
    example=Example(settings={"autoscaling_max_instances": "2", "autoscaling_min_instances": "0"}),
    needs=("config",),
)
def realtime_not_zero(view: View, derived: Derived) -> Iterator[str]:
    if not _realtime(view):
        return
    for schedule in view.config.autoscaling_schedules:
        if schedule.min_instances == 0:
            yield (
                f"autoscaling_schedules {schedule.name!r}: min_instances=0 would leave a real-time endpoint without "
                "instances (only asynchronous endpoints scale to zero: inference_mode=async); use at least 1"
            )
    if view.config.autoscaling_min_instances == 0:
        yield (
            "autoscaling_min_instances=0: only asynchronous endpoints can scale to zero (inference_mode=async); a "
            "real-time endpoint needs at least 1"
        )
