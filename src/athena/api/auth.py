"""The API token: ATHENA_API_TOKEN, else one generated on first start into `<data_dir>/api_token` (0600).

A voice gateway on a home network still controls lights through its local path, so nothing but /health* is
served without the token; comparison is constant-time.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from athena.config import Settings

TOKEN_FILE = "api_token"


@dataclass(frozen=True, slots=True)
class ApiToken:
    value: str
    source: str  # "ATHENA_API_TOKEN" or the token file's path
    generated: bool = False

    def matches(self, header: bytes | None) -> bool:
        """Whether an Authorization header value is `Bearer <this token>`."""
        if not header or header[:7].lower() != b"bearer ":
            return False
        return hmac.compare_digest(header[7:].strip(), self.value.encode())


def token_path(settings: Settings) -> Path:
    return settings.data_dir / TOKEN_FILE


def read_token_file(settings: Settings) -> str | None:
    try:
        value = token_path(settings).read_text().strip()
    except OSError:
        return None
    return value or None


def load_token(settings: Settings) -> ApiToken:
    given = settings.api_token.get_secret_value().strip() if settings.api_token else ""
    if given:
        return ApiToken(given, "ATHENA_API_TOKEN")
    path = token_path(settings)
    if existing := read_token_file(settings):
        return ApiToken(existing, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its token
        if existing := read_token_file(settings):
            return ApiToken(existing, str(path))
        raise
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return ApiToken(value, str(path), generated=True)
