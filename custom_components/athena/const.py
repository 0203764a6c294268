"""Names shared by the Athena integration's modules."""

from __future__ import annotations

import logging
from typing import Final

DOMAIN: Final = "athena"
LOGGER = logging.getLogger(__package__)

CONF_TIMEOUT: Final = "timeout"
CONF_PASS_CONVERSATION_ID: Final = "pass_conversation_id"

# A little above the gateway's own LLM timeout (30 s), so its spoken "the model is slow" answer wins the race.
DEFAULT_TIMEOUT: Final = 35.0
MIN_TIMEOUT: Final = 1.0
MAX_TIMEOUT: Final = 300.0
DEFAULT_PASS_CONVERSATION_ID: Final = True

INFO_PATH: Final = "/athena/info"
CONVERSATION_PATH: Final = "/ha/conversation"
INFO_TIMEOUT: Final = 10.0
