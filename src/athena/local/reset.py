"""Voice "start over": which whole utterances ask for a new conversation, in which language.

Whole-utterance matches only (after dropping punctuation, a polite "please" and a leading "okay"), so "forget
that I said the kitchen" still goes to the LLM. The engine acts on a match (one store write, no HA needed).
"""

from __future__ import annotations

from athena.local.followups import normalize

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

