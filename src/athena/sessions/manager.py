"""The device-session policy: which session a turn belongs to, how long it lives, what history the LLM sees.

The store keeps records and makes each operation atomic; every number (the clock reading, timeout, max age,
cap) comes from here. Expiry is enforced on every look-up, so a session is never reused past its deadline even
when no sweep has run; the background sweep only reclaims space and reports what ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from ulid import ULID

from athena.observability import SESSIONS_ACTIVE, SESSIONS_CREATED, SESSIONS_ENDED, SWEEP_SECONDS
from athena.records import Message, Session, validate_device_id
from athena.stores.base import Store, StoreError

log = structlog.get_logger("athena.sessions")

SWEEP_BATCH = 1000
EndReason = Literal["timeout", "max_age", "cleared"]


def estimate_tokens(value: object) -> int:
    """A rough token count (4 characters a token) of a text, a message or anything JSON: good enough to keep
    a prompt within a budget."""
    if isinstance(value, str):
        return math.ceil(len(value) / 4)
    if isinstance(value, Message):
        calls = value.meta.tool_calls
        return estimate_tokens(value.content) + sum(estimate_tokens(c.arguments) for c in calls)
    if isinstance(value, list | tuple):
        return sum(estimate_tokens(v) for v in value)
    if isinstance(value, Mapping):
        return sum(estimate_tokens(v) for v in value.values()) + len(value)
    return 1


@dataclass(frozen=True, slots=True)
class DeviceRule:
    """One device's overrides; None falls back to the global value."""

    timeout: float | None = None
    max_age: float | None = None


@dataclass(frozen=True)
class SessionPolicy:
    """The slice of the settings the session manager applies (ATHENA_SESSION_*, _HISTORY_*, _DEVICES)."""

    timeout: float = 300.0
    max_age: float = 86_400.0
    cleanup_interval: float = 60.0
    # Keyed by device id or device name; names match case-insensitively (see rule()).
    devices: Mapping[str, DeviceRule] = field(default_factory=dict)
    history_max_messages: int = 200
    history_context_messages: int = 20
    history_token_budget: int = 3000
    _folded: dict[str, DeviceRule] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_folded", {key.casefold(): rule for key, rule in self.devices.items()})

    def rule(self, device: str, name: str | None = None) -> DeviceRule | None:
        """The override for a device: by its exact id first, else by id or HA name, ignoring case."""
        return (
            self.devices.get(device)
            or self._folded.get(device.casefold())
            or (self._folded.get(name.casefold()) if name else None)
        )


class SessionManager:
    def __init__(
        self, store: Store, policy: SessionPolicy | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.policy = policy or SessionPolicy()
        self.clock = clock
        self._sweeper: asyncio.Task[None] | None = None

    # Life cycle.

    async def start(self) -> None:
        """Open the store (raises StoreError when it cannot be reached) and start the background sweep."""
        await self.store.open()
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="athena-session-sweep")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        await self.store.close()

    async def ping(self) -> None:
        await self.store.ping()

    # Policy.

    def limits(self, device: str, name: str | None = None) -> tuple[float, float]:
        """(timeout, max_age) for a device: its override, else the global values."""
        rule = self.policy.rule(device, name)
        timeout = rule.timeout if rule and rule.timeout else self.policy.timeout
        max_age = rule.max_age if rule and rule.max_age else self.policy.max_age
        return timeout, max_age

    def _live(self, session: Session | None, now: float) -> Session | None:
        return session if session is not None and now < session.expires_at else None

    # Sessions.

    async def resolve(self, device: str, *, new: bool = False, name: str | None = None) -> Session:
        """The device's live session, or a new one (`new=True`: always a new one, ending the current)."""
        validate_device_id(device)
        now = self.clock()
        timeout, max_age = self.limits(device, name)
        got = await self.store.acquire(device, now, timeout, max_age, str(ULID()), force_new=new)
        session = got.session
        if got.ended is not None:
            self._ended(got.ended, now, replaced=True)
        if got.created:
            SESSIONS_CREATED.inc()
            SESSIONS_ACTIVE.inc()
            log.info(
                "session.created", device=device, session_id=session.id, timeout=timeout, max_age=max_age,
                replaces=got.ended.id if got.ended else None,
            )
        else:
            log.debug("session.found", device=device, session_id=session.id, turns=session.turns)
        return session

    async def active(self, device: str) -> Session | None:
        validate_device_id(device)
        return self._live(await self.store.get(device), self.clock())

    async def get(self, session_id: str) -> Session | None:
        return self._live(await self.store.get_by_id(session_id), self.clock())

    async def append_turn(self, session: Session, *messages: Message) -> Session:
        """Save one turn's messages together; raises SessionGone if the session was replaced meanwhile."""
        updated = await self.store.append(
            session.id,
            messages,
            self.clock(),
            session.timeout,
            session.max_age,
            self.policy.history_max_messages,
            device=session.device,
        )
        log.debug("session.turn_saved", device=session.device, session_id=session.id, messages=len(messages))
        return updated

    async def history(self, session: Session, budget: int | None = None) -> list[Message]:
        """The newest messages within history_context_messages and the token budget (default
        history_token_budget), oldest first (see trim())."""
        limit = self.policy.history_context_messages
        budget = self.policy.history_token_budget if budget is None else budget
        if limit <= 0 or budget <= 0:
            return []
        return trim(await self.store.history(session.id, limit, device=session.device), budget)

    async def messages(self, session_id: str, device: str) -> list[Message]:
        """Every stored message of a session (not trimmed for the LLM)."""
        return await self.store.history(session_id, self.policy.history_max_messages, device=device)

    async def clear(self, device: str) -> bool:
        """"Start over": end the device's session and forget its history. False when there was none live."""
        validate_device_id(device)
        now = self.clock()
        removed = await self.store.clear(device)
        return removed is not None and self._ended(removed, now) == "cleared"

    def _ended(self, old: Session, now: float, **extra: Any) -> EndReason:
        """Count and log a session that a look-up or "start over" removed; return why it ended. One past its
        deadline had expired already (only the sweep had not reclaimed it); a live one was cleared."""
        SESSIONS_ACTIVE.dec()
        if now >= old.expires_at:
            reason: EndReason = old.end_reason
            log.info("session.expired", device=old.device, session_id=old.id, reason=reason, turns=old.turns)
        else:
            reason = "cleared"
            log.info("session.cleared", device=old.device, session_id=old.id, turns=old.turns, **extra)
        SESSIONS_ENDED.labels(reason=reason).inc()
        return reason

    async def describe(self, device: str) -> dict[str, Any] | None:
        """The device's live session as the operator API shows it, or None."""
        session = await self.active(device)
        return self._view(session, self.clock()) if session is not None else None

    def _view(self, session: Session, now: float) -> dict[str, Any]:
        return {
            "id": session.id,
            "device": session.device,
            "created_at": session.created_at,
            "last_activity": session.last_activity,
            "turns": session.turns,
            "expires_at": session.expires_at,
            "expires_in": max(0.0, session.expires_at - now),
            "expires_reason": session.end_reason,
            "timeout": session.timeout,
            "max_age": session.max_age,
        }

    async def list_active(self) -> list[dict[str, Any]]:
        """Live sessions, most recently active first."""
        now = self.clock()
        live = [s for s in await self.store.sessions() if now < s.expires_at]
        live.sort(key=lambda s: s.last_activity, reverse=True)
        return [self._view(s, now) for s in live]

    # Sweep.

    async def sweep(self) -> int:
        """Remove every session past its deadline, in batches; return how many."""
        started = time.perf_counter()
        now = self.clock()
        counts: dict[str, int] = {}
        while True:
            batch = await self.store.sweep(now, SWEEP_BATCH)
            for session in batch:
                reason = session.end_reason
                counts[reason] = counts.get(reason, 0) + 1
                SESSIONS_ENDED.labels(reason=reason).inc()
                log.info("session.cleaned_up", device=session.device, session_id=session.id, reason=reason,
                         turns=session.turns)
            if len(batch) < SWEEP_BATCH:
                break
        duration = time.perf_counter() - started
        SWEEP_SECONDS.observe(duration)
        active = await self.store.count(now)
        SESSIONS_ACTIVE.set(active)
        removed = sum(counts.values())
        (log.info if removed else log.debug)(
            "sweep.completed", removed=removed, timeout=counts.get("timeout", 0),
            max_age=counts.get("max_age", 0), active=active, duration_ms=round(duration * 1000, 2),
        )
        return removed

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.policy.cleanup_interval)
            try:
                await self.sweep()
            except StoreError as exc:
                log.warning("sweep.failed", error=str(exc))
            except Exception:  # the sweep must outlive one bad run; the next one retries
                log.exception("sweep.failed")


def trim(messages: Sequence[Message], budget: int) -> list[Message]:
    """The newest of `messages` within `budget` estimated tokens, never beginning with a tool result
    (whose call was cut off: a model's API rejects such a history)."""
    kept: list[Message] = []
    used = 0
    for message in reversed(messages):
        used += estimate_tokens(message)
        if used > budget:
            break
        kept.append(message)
    while kept and kept[-1].role == "tool":  # reversed: the last one kept is the oldest
        kept.pop()
    kept.reverse()
    return kept
