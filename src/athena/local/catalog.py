"""Home Assistant's own sentence and response templates, per language, loaded lazily and kept.

`home-assistant-intents` ships ~60 languages; a turn's language picks one ("en-US" → "en", "pt_BR" → "pt-BR").
hassil parses templates on first use (~300 ms for English), so `warm()` runs one recognition at start-up.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import home_assistant_intents
import structlog
from hassil import Intents, TextSlotList, recognize_best

log = structlog.get_logger("athena.local")

_LANGUAGES = {lang.casefold(): lang for lang in home_assistant_intents.get_languages()}


def shipped_languages() -> list[str]:
    """Every language Home Assistant's intent data ships (what the local path can understand)."""
    return sorted(_LANGUAGES.values())


@lru_cache(maxsize=256)
def resolve_language(language: str | None) -> str | None:
    """The shipped language that fits `language` best, or None when none does."""
    if not language:
        return None
    tag = language.strip().replace("_", "-").casefold()
    if tag in _LANGUAGES:
        return _LANGUAGES[tag]
    base = tag.split("-", 1)[0]
    return _LANGUAGES.get(base)


@dataclass
class LanguageIntents:
    language: str
    intents: Intents
    responses: dict[str, dict[str, str]]  # intent name -> response key -> Jinja template
    errors: dict[str, str]
    warmed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def response(self, intent: str, key: str | None) -> str | None:
        by_key = self.responses.get(intent) or {}
        return by_key.get(key or "default") or by_key.get("default")


class IntentCatalog:
    def __init__(self) -> None:
        self._loaded: dict[str, LanguageIntents | None] = {}
        self._lock = threading.Lock()

    @property
    def languages(self) -> list[str]:
        return sorted(lang for lang, li in self._loaded.items() if li is not None and li.warmed)

    def cached(self, language: str | None) -> LanguageIntents | None:
        """The language's intents if already loaded and warmed (never blocks)."""
        li = self._loaded.get(resolve_language(language) or "")
        return li if li is not None and li.warmed else None

    def get(self, language: str | None) -> LanguageIntents | None:
        """Load on first use (blocking, ~50-250 ms: call from a thread or at start-up)."""
        resolved = resolve_language(language)
        if resolved is None:
            return None
        if resolved in self._loaded:
            return self._loaded[resolved]
        with self._lock:
            if resolved not in self._loaded:
                self._loaded[resolved] = self._load(resolved)
        return self._loaded[resolved]

    def _load(self, language: str) -> LanguageIntents | None:
        started = time.perf_counter()
        data: dict[str, Any] | None = home_assistant_intents.get_intents(language)
        if data is None:
            return None
        responses = data.get("responses") or {}
        li = LanguageIntents(
            language=language,
            intents=Intents.from_dict(data),
            responses=responses.get("intents") or {},
            errors=responses.get("errors") or {},
        )
        log.info("intents.loaded", language=language, ms=round((time.perf_counter() - started) * 1000, 1))
        return li

    def warm(self, language: str | None) -> LanguageIntents | None:
        """Load and run one throwaway recognition so hassil parses its templates now, not on a user's turn."""
        li = self.get(language)
        if li is None or li.warmed:
            return li
        with li.lock:
            if not li.warmed:
                started = time.perf_counter()
                empty = TextSlotList.from_tuples([], allow_template=False)
                recognize_best(
                    "warm up",
                    li.intents,
                    slot_lists={"name": empty, "area": empty, "floor": empty},
                    language=li.language,
                )
                li.warmed = True
                ms = round((time.perf_counter() - started) * 1000, 1)
                log.info("intents.warmed", language=li.language, ms=ms)
        return li
