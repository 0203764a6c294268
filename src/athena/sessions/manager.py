"""The device-session policy: which session a turn belongs to, how long it lives, what history the LLM sees.

The store keeps records and makes each operation atomic; every number (the clock reading, timeout, max age,
cap) comes from here. Expiry is enforced on every look-up, so a session is never reused past its deadline even
when no sweep has run; the background sweep only reclaims space and reports what ended.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog
from ulid import ULID

from athena.observability import SESSIONS_ACTIVE, SESSIONS_CREATED, SESSIONS_ENDED, SWEEP_SECONDS
from athena.records import (
    NO_SETTINGS,
    DeviceRecord,
    DeviceSettings,
    Message,
    PastSession,
    Session,
    UsageRow,
    Visit,
    validate_device_id,
)
from athena.stores.base import Acquired, DeviceChanged, Store, StoreError
from athena.tasks import cancel_and_wait

log = structlog.get_logger("athena.sessions")

SWEEP_BATCH = 1000
EndReason = Literal["timeout", "max_age", "cleared"]
DeviceStatus = Literal["allowed", "blocked", "pending"]
SETTINGS_CACHE = 10_000  # devices whose stored settings a gateway keeps in memory (see SessionManager.admit)


def _tokens(text: str) -> int:
    return -(-len(text) // 4)  # ceil(len / 4)


def estimate_tokens(value: object) -> int:
    """A rough token count (4 characters a token) of a text, a message or anything JSON: good enough to keep
    a prompt within a budget."""
    if isinstance(value, str):
        return _tokens(value)
    if isinstance(value, Message):  # every message of every turn's history: kept cheap
        return _tokens(value.content) + sum(_tokens(call.arguments) for call in value.meta.tool_calls)
    if isinstance(value, list | tuple):
        return sum(estimate_tokens(v) for v in value)
    if isinstance(value, Mapping):
        return sum(estimate_tokens(v) for v in value.values()) + len(value)
    return 1


@dataclass(frozen=True, slots=True)
class DeviceRule:
    """One device's overrides (ATHENA_DEVICES); None falls back to the global value."""

    timeout: float | None = None
    max_age: float | None = None
    history: int | None = None
    system_prompt: str | None = None
    language: str | None = None
    status: Literal["allowed", "blocked"] | None = None


@dataclass(frozen=True, slots=True)
class DeviceView:
    """A device's settings as its turns apply them: stored (run time) > ATHENA_DEVICES > global."""

    device: str
    version: int  # of the stored settings this view was built from (0: none stored)
    timeout: float
    max_age: float
    history: int  # messages of history sent to the LLM
    system_prompt: str | None
    language: str | None
    status: DeviceStatus

    @property
    def refused(self) -> bool:
        return self.status != "allowed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "timeout": self.timeout, "max_age": self.max_age, "history": self.history,
            "system_prompt": self.system_prompt, "language": self.language, "status": self.status,
        }


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
    device_policy: Literal["open", "known"] = "open"  # known: devices not allowed are refused (pending)
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
        # Stored settings by device: (version, settings). Trusted for a turn's first steps only: the turn's
        # own acquire checks the version atomically, so a change made through another gateway applies from
        # the device's next turn here too (see admit()).
        self._stored: dict[str, tuple[int, DeviceSettings]] = {}

    # Life cycle.

    async def start(self) -> None:
        """Open the store (raises StoreError when it cannot be reached) and start the background sweep."""
        await self.store.open()
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="athena-session-sweep")

    async def stop(self) -> None:
        await cancel_and_wait(self._sweeper)
        self._sweeper = None
        await self.store.close()

    async def ping(self) -> None:
        await self.store.ping()

    # Policy.

    def limits(self, device: str, name: str | None = None) -> tuple[float, float]:
        """(timeout, max_age) for a device: its stored setting, its override, else the global values."""
        view = self.view(device, name)
        return view.timeout, view.max_age

    def view(self, device: str, name: str | None = None) -> DeviceView:
        """The device's settings from what this gateway last saw stored (no I/O)."""
        version, stored = self._stored.get(device, (0, NO_SETTINGS))
        rule = self.policy.rule(device, name) or DeviceRule()
        p = self.policy

        def pick(field: str, default: Any) -> Any:
            for source in (stored, rule):
                if (value := getattr(source, field)) is not None:
                    return value
            return default

        status: DeviceStatus = pick("status", "allowed" if p.device_policy == "open" else "pending")
        return DeviceView(
            device, version, pick("timeout", p.timeout), pick("max_age", p.max_age),
            pick("history", p.history_context_messages), pick("system_prompt", None), pick("language", None),
            status,
        )

    def remember(self, record: DeviceRecord) -> None:
        """Keep a device's stored settings (bounded: the oldest entry goes first)."""
        self._stored.pop(record.id, None)
        if len(self._stored) >= SETTINGS_CACHE:
            del self._stored[next(iter(self._stored))]
        if record.version:
            self._stored[record.id] = (record.version, record.settings)

    async def admit(self, device: str, name: str | None = None, area: str | None = None) -> DeviceView:
        """The device's settings for a turn, and whether the policy serves it. Allowed by what this gateway
        knows: no I/O (the turn's acquire checks the version). Refused: read the store first (another
        gateway may have allowed it meanwhile), and if still refused, record the refused turn."""
        validate_device_id(device)
        view = self.view(device, name)
        if not view.refused:
            return view
        self.remember(await self.store.device(device) or DeviceRecord(device))
        view = self.view(device, name)
        if view.refused:
            now = self.clock()
            refused = UsageRow(now, device, "", "refused", 0.0)
            await self.store.refuse(device, now, Visit(name, area, view.version), refused)
            log.info("device.refused", device=device, status=view.status)
        return view

    def _live(self, session: Session | None, now: float) -> Session | None:
        return session if session is not None and now < session.expires_at else None

    # Sessions.

    async def resolve(
        self,
        device: str,
        *,
        new: bool = False,
        name: str | None = None,
        area: str | None = None,
        view: DeviceView | None = None,
        reset_ms: float | None = None,
    ) -> Session:
        """The device's live session, or a new one (`new=True`: always a new one, ending the current).

        `view` (a device's turn, from admit()): its limits apply and the visit is recorded; raises
        DeviceChanged, with this gateway's copy refreshed, when its settings changed meanwhile. `reset_ms`:
        the turn is a "start over" answered in that time (counted in usage)."""
        got = await self._acquire(device, new, name, area, view, reset_ms, 0)
        return got.session

    async def begin(
        self,
        device: str,
        *,
        new: bool = False,
        name: str | None = None,
        area: str | None = None,
        view: DeviceView | None = None,
    ) -> tuple[Session, list[Message]]:
        """`resolve()` and `history()` in one store operation: the session a turn belongs to and the history
        the LLM sees (a found session's newest messages; a new one has none)."""
        limit = self.view(device, name).history if view is None else view.history
        got = await self._acquire(device, new, name, area, view, None, limit)
        return got.session, self._for_llm(got.messages, None)

    async def _acquire(
        self,
        device: str,
        new: bool,
        name: str | None,
        area: str | None,
        view: DeviceView | None,
        reset_ms: float | None,
        history: int,
    ) -> Acquired:
        validate_device_id(device)
        now = self.clock()
        timeout, max_age = (view.timeout, view.max_age) if view is not None else self.limits(device, name)
        visit = Visit(name, area, view.version) if view is not None else None
        new_id = str(ULID())
        usage = UsageRow(now, device, new_id, "reset", reset_ms) if reset_ms is not None else None
        try:
            got = await self.store.acquire(
                device, now, timeout, max_age, new_id, force_new=new, visit=visit, usage=usage,
                history=history,
            )
        except DeviceChanged as exc:
            self.remember(exc.record)
            log.info("device.settings_changed", device=device, version=exc.record.version)
            raise
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
        return got

    async def active(self, device: str) -> Session | None:
        validate_device_id(device)
        return self._live(await self.store.get(device), self.clock())

    async def get(self, session_id: str) -> Session | None:
        return self._live(await self.store.get_by_id(session_id), self.clock())

    async def append_turn(self, session: Session, *messages: Message) -> Session:
        """Save one turn's messages together; raises SessionGone if the session was replaced meanwhile."""
        now = self.clock()
        updated = await self.store.append(
            session.id,
            messages,
            now,
            session.timeout,
            session.max_age,
            self.policy.history_max_messages,
            device=session.device,
            usage=usage_of(session, messages, now),
        )
        log.debug("session.turn_saved", device=session.device, session_id=session.id, messages=len(messages))
        return updated

    async def history(self, session: Session, budget: int | None = None) -> list[Message]:
        """The newest messages within history_context_messages and the token budget (default
        history_token_budget), oldest first (see trim())."""
        limit = self.view(session.device).history
        if limit <= 0:
            return []
        return self._for_llm(await self.store.history(session.id, limit, device=session.device), budget)

    def _for_llm(self, stored: Sequence[Message], budget: int | None) -> list[Message]:
        budget = self.policy.history_token_budget if budget is None else budget
        if budget <= 0:
            return []
        # A failed turn's question and error are kept for the operator, not shown to the LLM.
        return trim([m for m in stored if m.meta.path != "error"], budget)

    async def messages(self, session_id: str, device: str) -> list[Message]:
        """Every stored message of a session (not trimmed for the LLM)."""
        return await self.store.history(session_id, self.policy.history_max_messages, device=device)

    async def clear(self, device: str) -> bool:
        """"Start over": end the device's session and forget its history. False when there was none live."""
        validate_device_id(device)
        now = self.clock()
        removed = await self.store.clear(device, now)
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

    # Devices (the operator's console).

    async def find_device(self, ref: str) -> list[str]:
        """The devices `ref` names: its id, else HA names equal to it ignoring case (several: ambiguous)."""
        records = await self.store.devices()
        if any(r.id == ref for r in records):
            return [ref]
        folded = ref.casefold()
        named = [r.id for r in records if folded in (r.id.casefold(), (r.name or "").casefold())]
        return sorted(named)

    def _device_view(self, record: DeviceRecord, live: Session | None, now: float) -> dict[str, Any]:
        self.remember(record)
        view = self.view(record.id, record.name)
        return {
            "id": record.id,
            "name": record.name,
            "area": record.area,
            "first_seen": record.first_seen,
            "last_seen": record.last_seen,
            "turns": record.turns,
            "refused": record.refused,
            "status": view.status,
            "settings": record.settings.to_dict(),  # what is stored; `effective` is what applies
            "effective": view.to_dict(),
            "version": record.version,
            "session": self._view(live, now) if live is not None and now < live.expires_at else None,
        }

    async def devices(self) -> list[dict[str, Any]]:
        """Every device with a record, most recently seen first; configured-but-unseen ones last."""
        now = self.clock()
        records = await self.store.devices()
        live = {s.device: s for s in await self.store.sessions()}
        records.sort(key=lambda r: r.last_seen or 0.0, reverse=True)
        return [self._device_view(r, live.get(r.id), now) for r in records]

    async def device(self, device: str) -> dict[str, Any] | None:
        """One device with its live session and its past sessions (newest first), or None."""
        record = await self.store.device(device)
        if record is None:
            return None
        now = self.clock()
        out = self._device_view(record, await self.store.get(device), now)
        out["past"] = [_past_view(p) for p in await self.store.past(device, now)]
        return out

    async def configure(self, device: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Store settings (a value sets one, None clears it); they apply from the device's next turn."""
        validate_device_id(device)
        record = await self.store.configure(device, changes, self.clock())
        self.remember(record)
        log.info("device.configured", device=device, version=record.version, changed=sorted(changes))
        found = await self.device(device)
        assert found is not None
        return found

    async def forget(self, device: str) -> bool:
        """Delete everything kept about a device (on request): record, settings, sessions, usage."""
        validate_device_id(device)
        live = await self.active(device)
        gone = await self.store.forget(device)
        self._stored.pop(device, None)
        if live is not None:
            SESSIONS_ACTIVE.dec()
            SESSIONS_ENDED.labels(reason="cleared").inc()
        log.info("device.forgotten", device=device, found=gone)
        return gone

    async def past_session(self, device: str, session_id: str) -> tuple[dict[str, Any], list[Message]] | None:
        """An ended session still within retention, with its messages."""
        now = self.clock()
        for past in await self.store.past(device, now):
            if past.session.id == session_id:
                messages = await self.store.past_history(device, session_id, self.policy.history_max_messages)
                return _past_view(past), messages
        return None

    async def usage(self, since: float, until: float) -> list[UsageRow]:
        return await self.store.usage(since, until)

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
        purged = await self.store.purge(now)
        duration = time.perf_counter() - started
        SWEEP_SECONDS.observe(duration)
        active = await self.store.count(now)
        SESSIONS_ACTIVE.set(active)
        removed = sum(counts.values())
        (log.info if removed else log.debug)(
            "sweep.completed", removed=removed, timeout=counts.get("timeout", 0),
            max_age=counts.get("max_age", 0), active=active, purged=purged,
            duration_ms=round(duration * 1000, 2),
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


def _past_view(past: PastSession) -> dict[str, Any]:
    s = past.session
    return {
        "id": s.id, "device": s.device, "created_at": s.created_at, "last_activity": s.last_activity,
        "turns": s.turns, "ended_at": past.ended_at, "ended_reason": past.reason, "timeout": s.timeout,
        "max_age": s.max_age,
    }


def usage_of(session: Session, messages: Sequence[Message], now: float) -> UsageRow | None:
    """A turn's usage row from the messages it saves: the path and latency of its last answer, "tools" when
    the LLM called tools (or tool results continue its turn). None for what HA answered itself (no path)."""
    answer = next((m for m in reversed(messages) if m.meta.path), None)
    if answer is None:
        return None
    calls = sum(len(m.meta.tool_calls) for m in messages)
    path = answer.meta.path or "llm"
    if path == "llm" and (calls or any(m.role == "tool" for m in messages)):
        path = "tools"
    return UsageRow(now, session.device, session.id, path, answer.meta.latency_ms or 0.0, calls)


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
