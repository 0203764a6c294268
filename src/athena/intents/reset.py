"""Voice "start over": a whole utterance like "new conversation" clears the device's session, no HA needed.

Whole-utterance matches only (after dropping punctuation, a polite "please" and a leading "okay"), so "forget
that I said the kitchen" still goes to the LLM.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from athena.engine.types import LocalAnswer, Turn
from athena.intents.followups import normalize
from athena.sessions.manager import SessionManager
from athena.sessions.models import Message, Session
from athena.stores.base import StoreError

log = structlog.get_logger("athena.intents")

# language -> (phrases, the spoken answer)
PHRASES: dict[str, tuple[frozenset[str], str]] = {
    "en": (
        frozenset(
            {
                "start over",
                "start again",
                "lets start over",
                "let's start over",
                "let's start again",
                "new conversation",
                "new chat",
                "new session",
                "new topic",
                "start a new conversation",
                "forget that",
                "forget it all",
                "forget everything",
                "forget our conversation",
                "reset",
                "reset the conversation",
                "reset conversation",
                "reset the chat",
                "clear the conversation",
                "clear conversation",
                "clear the chat",
                "clear history",
            }
        ),
        "Okay, let's start over.",
    ),
    "de": (
        frozenset(
            {
                "von vorne",
                "fang von vorne an",
                "noch mal von vorne",
                "neues gespräch",
                "neue unterhaltung",
                "vergiss das",
                "vergiss alles",
                "zurücksetzen",
                "gespräch zurücksetzen",
                "neu anfangen",
            }
        ),
        "Okay, wir fangen von vorne an.",
    ),
    "fr": (
        frozenset(
            {
                "recommence",
                "recommencer",
                "on recommence",
                "nouvelle conversation",
                "oublie ça",
                "oublie tout",
                "réinitialise",
                "réinitialiser la conversation",
            }
        ),
        "D'accord, on recommence.",
    ),
    "es": (
        frozenset(
            {
                "empezar de nuevo",
                "empecemos de nuevo",
                "nueva conversación",
                "olvida eso",
                "olvídalo todo",
                "reinicia la conversación",
                "reiniciar",
            }
        ),
        "Vale, empecemos de nuevo.",
    ),
    "nl": (
        frozenset(
            {
                "opnieuw beginnen",
                "begin opnieuw",
                "nieuw gesprek",
                "vergeet dat",
                "vergeet alles",
                "reset het gesprek",
                "reset",
            }
        ),
        "Oké, we beginnen opnieuw.",
    ),
}
_POLITE = ("please ", "okay ", "ok ", "bitte ", "alright ")
_POLITE_END = (" please", " bitte", " s'il te plaît", " por favor", " alsjeblieft")


def is_start_over(text: str, language: str) -> str | None:
    """The answer to speak if `text` asks to start over in `language` (or English), else None."""
    said = normalize(text)
    for prefix in _POLITE:
        said = said.removeprefix(prefix)
    for suffix in _POLITE_END:
        said = said.removesuffix(suffix)
    base = (language or "en").split("-", 1)[0].split("_", 1)[0].casefold()
    for lang in dict.fromkeys((base, "en")):
        entry = PHRASES.get(lang)
        if entry is not None and said in entry[0]:
            return entry[1]
    return None


class StartOverHandler:
    def __init__(self, sessions: SessionManager | None = None) -> None:
        self.sessions = sessions

    async def handle(self, turn: Turn, session: Session, history: Sequence[Message]) -> LocalAnswer | None:
        answer = is_start_over(turn.text, turn.language)
        if answer is None:
            return None
        if self.sessions is not None:
            try:
                await self.sessions.clear(session.device)
            except StoreError as exc:  # the engine's fresh session replaces the old one anyway
                log.warning("intents.start_over.clear_failed", device=session.device, error=str(exc))
        log.info("intents.start_over", device=session.device, session_id=session.id)
        return LocalAnswer(speech=answer, response_type="action_done", path="reset", reset=True)
