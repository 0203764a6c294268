"""The data a session is made of: small frozen records that every store reads and writes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]

# Device keys come from the network (HA device ids, satellite entity ids, conversation ids, names typed by a
# person): bound them before they become store keys.
DEVICE_ID_MAX = 128
_DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]*")


class InvalidDeviceId(ValueError):
    """A device id that is empty, too long or has characters outside [A-Za-z0-9._:@/-]."""


def validate_device_id(value: str) -> str:
    if not value or len(value) > DEVICE_ID_MAX or not _DEVICE_ID.fullmatch(value):
        raise InvalidDeviceId(
            f"device id must be 1-{DEVICE_ID_MAX} characters of letters, digits and . _ : @ / -"
        )
    return value


@dataclass(frozen=True, slots=True)
class Session:
    """One device's conversation. `expires_at` = min(last_activity + timeout, created_at + max_age)."""

    id: str
    device: str
    created_at: float
    last_activity: float
    expires_at: float
    timeout: float
    max_age: float
    turns: int = 0

    @classmethod
    def begin(cls, session_id: str, device: str, now: float, timeout: float, max_age: float) -> Session:
        return cls(session_id, device, now, now, expiry(now, now, timeout, max_age), timeout, max_age)

    def touched(self, now: float, timeout: float, max_age: float, *, turns: int = 0) -> Session:
        """This session after activity at `now` and `turns` more turns, under the caller's policy (which may
        differ from the one it began with, e.g. an override matched by device name on a later turn)."""
        return Session(
            self.id, self.device, self.created_at, now, expiry(self.created_at, now, timeout, max_age),
            timeout, max_age, self.turns + turns,
        )

    @property
    def ended_by_age(self) -> bool:
        """Whether the maximum age, rather than inactivity, sets the expiry."""
        return self.created_at + self.max_age <= self.last_activity + self.timeout


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str
    ts: float
    meta: Mapping[str, Any] = field(default_factory=dict)


def expiry(created_at: float, last_activity: float, timeout: float, max_age: float) -> float:
    """When a session ends: after `timeout` idle seconds or at `max_age`, whichever comes first."""
    return min(last_activity + timeout, created_at + max_age)
