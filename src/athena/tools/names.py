"""The names the model sees: valid for every backend (OpenAI's `^[a-zA-Z0-9_-]{1,64}$` is the strictest) and
stable — the same tool keeps its name across refreshes, restarts and Home Assistant versions.

- Home Assistant's tools: HA 2026.7+ prefixes each with the domain that provides it (`intent__HassTurnOn`,
  `homeassistant__GetLiveContext`, `script__good_morning`); older HA does not (`HassTurnOn`). The prefix is
  dropped, so the model reads `HassTurnOn` on every version; the call uses the remote name.
- Any other server's tools: `<server>__<tool>`.
- Characters outside `[A-Za-z0-9_-]` become `_`; a name over 64 characters, or one two tools would share, is
  cut and given a suffix hashed from its server and remote name (so it does not depend on the other tools).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Mapping

MAX_LENGTH = 64
VALID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_INVALID_CHARS = re.compile(r"[^A-Za-z0-9_-]")
# HA's prefix: an integration domain (lower case, digits, underscores) and a double underscore.
_HA_PREFIX = re.compile(r"^[a-z0-9_]+?__(?=.)")

Key = tuple[str, str]  # (server, remote name)


def sanitize(text: str) -> str:
    """Only letters, digits, `_` and `-`; never empty."""
    return _INVALID_CHARS.sub("_", text) or "_"


def home_assistant(remote: str) -> str:
    """HA's tool without its domain prefix: `intent__HassTurnOn` → `HassTurnOn`; `HassTurnOn` stays."""
    return sanitize(_HA_PREFIX.sub("", remote, count=1))


def qualified(server: str, remote: str) -> str:
    """Another server's tool: `weather` + `forecast` → `weather__forecast`."""
    return f"{sanitize(server)}__{sanitize(remote)}"


def _suffix(key: Key) -> str:
    return hashlib.sha256(f"{key[0]}\x00{key[1]}".encode()).hexdigest()[:8]


def _with_suffix(name: str, key: Key) -> str:
    suffix = "_" + _suffix(key)
    return name[: MAX_LENGTH - len(suffix)] + suffix


def assign(wanted: Mapping[Key, str]) -> dict[Key, str]:
    """The final name of every tool: its wanted name when that is short enough and its own, else the name
    cut to fit with a hash suffix. Deterministic: the same keys and wanted names give the same result in any
    order."""
    counts = Counter(wanted.values())
    out: dict[Key, str] = {}
    for key, name in wanted.items():
        out[key] = name if len(name) <= MAX_LENGTH and counts[name] == 1 else _with_suffix(name, key)
    # A suffixed name could, in theory, equal another tool's plain name: suffix that one too.
    seen = Counter(out.values())
    for key, name in list(out.items()):
        if seen[name] > 1 and name == wanted[key]:
            out[key] = _with_suffix(name, key)
    return out


def unique(names: Iterable[str]) -> bool:
    items = list(names)
    return len(items) == len(set(items)) and all(VALID.match(n) for n in items)
