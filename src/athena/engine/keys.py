"""Which session a turn belongs to: one rule, applied only here.

1. HA's `device_id` (or a device name an API caller chose), else the `satellite_id`: the device's session.
2. Else the `conversation_id`: a session id Athena returned continues that session; any other id (up to
   turns.MAX_CONVERSATION_ID characters) is a conversation of its own, keyed `conversation:<id>` — or, when
   that key would not be a valid device key (too long, other characters), `conversation-sha256:<digest>`.
3. Else a one-off session that nothing will continue.
"""

from __future__ import annotations

import hashlib

from ulid import ULID

from athena.records import is_device_id
from athena.turns import Turn

CONVERSATION = "conversation:"
HASHED_CONVERSATION = "conversation-sha256:"  # cannot collide: readable keys start with "conversation:"
ONE_OFF = "oneoff:"


def device_key(turn: Turn) -> str | None:
    return turn.device_id or turn.satellite_id or None


def conversation_key(conversation_id: str) -> str:
    key = CONVERSATION + conversation_id
    if is_device_id(key):
        return key
    return HASHED_CONVERSATION + hashlib.sha256(conversation_id.encode()).hexdigest()[:40]


def one_off_key() -> str:
    return ONE_OFF + str(ULID())
