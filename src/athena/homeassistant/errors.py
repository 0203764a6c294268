"""What can go wrong talking to Home Assistant, as specific classes the local path can fall through on."""

from __future__ import annotations


class HAError(Exception):
    """Home Assistant could not serve the request; the turn goes to the LLM instead."""


class HAUnavailable(HAError):
    """Connection refused, reset or timed out: HA is down or unreachable."""


class HAAuthError(HAError):
    """HA refused the token (401/403 or WebSocket auth_invalid)."""


class HAResponseError(HAError):
    """HA answered with an error status or a body that is not what its API documents."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
