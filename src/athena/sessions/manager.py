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
from collections.abc import Callable
from typing import Any

import structlog
from ulid import ULID

from athena.config import Settings
from athena.observability import SESSIONS_ACTIVE, SESSIONS_CREATED, SESSIONS_ENDED, SWEEP_SECONDS
from athena.sessions.models import Message, Session, validate_device_id
from athena.stores.base import Store, StoreError

log = structlog.get_logger("athena.sessions")

SWEEP_BATCH = 1000


def end_reason(session: Session) -> str:
    """Why a session ends (or ended): "max_age" when its age limit comes before its idle timeout."""
    return "max_age" if session.ended_by_age else "timeout"


def estimate_tokens(text: str) -> int:
    """A rough token count (4 characters a token): good enough to keep a prompt within a budget."""
    return math.ceil(len(text) / 4)


class SessionManager:
    def __init__(self, store: Store, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.settings = settings
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

    def policy(self, device: str, name: str | None = None) -> tuple[float, float]:
        """(timeout, max_age) for a device: its override by id, else by name, else the global values."""
        overrides = self.settings.devices
        rule = overrides.get(device) or (overrides.get(name) if name else None)
        timeout = rule.timeout if rule and rule.timeout else self.settings.session_timeout
        max_age = rule.max_age if rule and rule.max_age else self.settings.session_max_age
        return timeout, max_age

    def _live(self, session: Session | None, now: float) -> Session | None:
        return session if session is not None and now < session.expires_at else None

    # Sessions.

    async def resolve(self, device: str, *, new: bool = False, name: str | None = None) -> Session:
        """The device's live session, or a new one (`new=True`: always a new one, ending the current)."""
        validate_device_id(device)
        now = self.clock()
        timeout, max_age = self.policy(device, name)
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
            log.info("session.found", device=device, session_id=session.id, turns=session.turns)
        return session

    async def active(self, device: str) -> Session | None:
        validate_device_id(device)
        return self._live(await self.store.get(device), self.clock())

    async def get(self, session_id: str) -> Session | None:
        if not session_id or len(session_id) > 64:  # a conversation id from the network; ours are 26 chars
            return None
        return self._live(await self.store.get_by_id(session_id), self.clock())

    async def append_turn(self, session: Session, *messages: Message) -> Session:
        """Save one turn's messages together; raises SessionGone if the session was replaced meanwhile."""
        updated = await self.store.append(
            session.id,
            messages,
            self.clock(),
            session.timeout,
            session.max_age,
            self.settings.history_max_messages,
            device=session.device,
        )
        log.debug("session.turn_saved", device=session.device, session_id=session.id, messages=len(messages))
        return updated

    async def history(self, session: Session) -> list[Message]:
        """The newest messages within history_context_messages and history_token_budget, oldest first."""
        limit = self.settings.history_context_messages
        budget = self.settings.history_token_budget
        if limit <= 0 or budget <= 0:
            return []
        messages = await self.store.history(session.id, limit, device=session.device)
        kept: list[Message] = []
        used = 0
        for message in reversed(messages):
            used += estimate_tokens(message.content)
            if used > budget:
                break
            kept.append(message)
        kept.reverse()
        return kept

    async def clear(self, device: str) -> bool:
        """"Start over": end the device's session and forget its history. False when there was none live."""
        validate_device_id(device)
        now = self.clock()
        removed = await self.store.clear(device)
        return removed is not None and self._ended(removed, now) == "cleared"

    def _ended(self, old: Session, now: float, **extra: Any) -> str:
        """Count and log a session that a look-up or "start over" removed; return why it ended. One past its
        deadline had expired already (only the sweep had not reclaimed it); a live one was cleared."""
        SESSIONS_ACTIVE.dec()
        if now >= old.expires_at:
            reason = end_reason(old)
            log.info("session.expired", device=old.device, session_id=old.id, reason=reason, turns=old.turns)
        else:
            reason = "cleared"
            log.info("session.cleared", device=old.device, session_id=old.id, turns=old.turns, **extra)
        SESSIONS_ENDED.labels(reason=reason).inc()
        return reason

    def _describe(self, session: Session, now: float) -> dict[str, Any]:
        return {
            "id": session.id,
            "device": session.device,
            "created_at": session.created_at,
            "last_activity": session.last_activity,
            "turns": session.turns,
            "expires_at": session.expires_at,
            "expires_in": max(0.0, session.expires_at - now),
            "expires_reason": end_reason(session),
            "timeout": session.timeout,
            "max_age": session.max_age,
        }

    async def describe(self, device: str) -> dict[str, Any] | None:
        validate_device_id(device)
        now = self.clock()
        session = self._live(await self.store.get(device), now)
        return self._describe(session, now) if session else None

    async def list_active(self) -> list[dict[str, Any]]:
        """Live sessions, most recently active first."""
        now = self.clock()
        live = [s for s in await self.store.sessions() if now < s.expires_at]
        live.sort(key=lambda s: s.last_activity, reverse=True)
        return [self._describe(s, now) for s in live]

    # Sweep.

    async def sweep(self) -> int:
        """Remove every session past its deadline, in batches; return how many."""
        started = time.perf_counter()
        now = self.clock()
        counts: dict[str, int] = {}
        while True:
            batch = await self.store.sweep(now, SWEEP_BATCH)
            for session in batch:
                reason = end_reason(session)
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
            await asyncio.sleep(self.settings.cleanup_interval)
            try:
                await self.sweep()
            except StoreError as exc:
                log.warning("sweep.failed", error=str(exc))
            except Exception:  # the sweep must outlive one bad run; the next one retries
                log.exception("sweep.failed")
