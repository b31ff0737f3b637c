"""What `list` and `reap` show: the branch environments among a backend's stacks, how long each has been idle, what
it reserves and costs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from envs.branch_config import TAG_BRANCH, TAG_CREATED
from envs.naming import is_branch_stack


@dataclass
class StackInfo:
    """What the engine says about one stack (a StackSummary plus its tags)."""

    name: str
    last_update: datetime | None = None
    resource_count: int | None = None
    update_in_progress: bool | None = None
    tags: dict[str, str] | None = None
    outputs: dict[str, Any] | None = None  # the stack's outputs (requested_cpu, requested_memory, monthly_cost)


@dataclass
class BranchEnv:
    stack: str
    branch: str | None
    created: datetime | None
    last_update: datetime | None
    resource_count: int | None
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def last_activity(self) -> datetime | None:
        times = [t for t in (self.created, self.last_update) if t is not None]
        return max(times) if times else None

    def idle(self, now: datetime) -> timedelta | None:
        return None if self.last_activity is None else now - self.last_activity


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return _aware(value)


def _aware(value: datetime | None) -> datetime | None:
    """Naive times (as some backends report them) are UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def short_stack_name(name: str) -> str:
    """`org/project/stack` (how some backends list stacks) → `stack`."""
    return name.rsplit("/", 1)[-1]


def branch_envs(stacks: Iterable[StackInfo]) -> list[BranchEnv]:
    envs = []
    for info in stacks:
        name = short_stack_name(info.name)
        if not is_branch_stack(name):
            continue
        tags = info.tags or {}
        created = _parse_time(tags.get(TAG_CREATED))
        envs.append(BranchEnv(name, tags.get(TAG_BRANCH), created, _aware(info.last_update), info.resource_count,
                              dict(info.outputs or {})))
    return sorted(envs, key=lambda env: env.stack)


def older_than(envs: Iterable[BranchEnv], days: float, now: datetime) -> list[BranchEnv]:
    """Environments idle (neither created nor updated) for more than `days`. One with no time at all is
    reported too: nothing shows it is in use."""
    limit = timedelta(days=days)
    return [env for env in envs if env.idle(now) is None or env.idle(now) > limit]  # type: ignore[operator]


def _age(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "-"
    seconds = max(0, int((now - value).total_seconds()))
    if seconds >= 86400:
        return f"{seconds // 86400}d{(seconds % 86400) // 3600}h ago"
    if seconds >= 3600:
        return f"{seconds // 3600}h{(seconds % 3600) // 60}m ago"
    return f"{seconds // 60}m ago"


def _number(outputs: dict[str, Any], key: str) -> float | None:
    try:
        return float(outputs[key])
    except (KeyError, TypeError, ValueError):
        return None  # a stack last updated before these outputs existed


def _cost(env: BranchEnv) -> str:
    cost = _number(env.outputs, "monthly_cost")
    return "-" if cost is None else f"{cost:.2f} {env.outputs.get('cost_currency') or ''}".rstrip()


def format_table(envs: list[BranchEnv], now: datetime) -> str:
    """One row per environment, with what it reserves while it runs (requests, LimitRange defaults included:
    components/footprint.py) and the monthly price of that, and a total row."""
    rows = [("STACK", "BRANCH", "CREATED", "LAST UPDATE", "RESOURCES", "CPU", "MEMORY", "COST/MONTH")]
    for env in envs:
        cpu, memory = _number(env.outputs, "requested_cpu"), _number(env.outputs, "requested_memory")
        rows.append(
            (
                env.stack,
                env.branch or "?",
                _age(env.created, now),
                _age(env.last_update, now),
                "-" if env.resource_count is None else str(env.resource_count),
                "-" if cpu is None else f"{cpu:.2f}",
                "-" if memory is None else f"{memory:.2f}Gi",
                _cost(env),
            )
        )
    costs = [_number(env.outputs, "monthly_cost") for env in envs]
    currencies = {env.outputs.get("cost_currency") for env in envs if env.outputs}
    if len(envs) > 1 and any(c is not None for c in costs) and len(currencies) == 1:
        cpus = sum(_number(env.outputs, "requested_cpu") or 0 for env in envs)
        memories = sum(_number(env.outputs, "requested_memory") or 0 for env in envs)
        total = sum(c or 0 for c in costs)
        rows.append(("TOTAL", "", "", "", "", f"{cpus:.2f}", f"{memories:.2f}Gi",
                     f"{total:.2f} {currencies.pop() or ''}".rstrip()))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)
