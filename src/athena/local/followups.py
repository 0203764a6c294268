"""Follow-ups HA's templates do not have ("now turn them off", "what about the kitchen?", "brighter").

Each phrase only says *what changes*; the session's memory of the last local intent (its slots and targets)
supplies the rest. A small table per language; a language without one simply has no follow-ups.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

Kind = Literal["power", "place", "adjust", "level"]


@dataclass(frozen=True, slots=True)
class FollowUp:
    kind: Kind
    on: bool | None = None  # power
    place: str | None = None  # place: an area, floor or entity name as said
    step: int = 0  # adjust: +1 brighter, -1 dimmer
    level: int | None = None  # level: 0-100


_PUNCT = re.compile(r"[^\w\s%'-]+")


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold().replace("’", "'")
    return " ".join(_PUNCT.sub(" ", text).split())


@dataclass(frozen=True)
class _Table:
    power: tuple[re.Pattern[str], ...]
    place: tuple[re.Pattern[str], ...]
    adjust: tuple[re.Pattern[str], ...]
    level: tuple[re.Pattern[str], ...]
    on_words: frozenset[str]
    up_words: frozenset[str]


def _c(*patterns: str) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p) for p in patterns)


_EN_LEAD = r"(?:(?:now|ok|okay|and|then|also|please|could you|can you|would you|just)\s+)*"
_EN_TAIL = r"(?:\s+(?:please|again|too|as well|now|instead|for me))*"
_EN_PRON = r"(?:it|them|that|those|these|this|they)"
_EN_PCT = r"(?P<level>\d{1,3})\s*(?:%|percent|per cent)?"

_EN = _Table(
    power=_c(
        rf"^{_EN_LEAD}(?:turn|switch|shut|put|flip)\s+{_EN_PRON}\s+(?:back\s+)?(?P<on>on|off){_EN_TAIL}$",
        rf"^{_EN_LEAD}(?:turn|switch|shut|put|flip)\s+(?:back\s+)?(?P<on>on|off)\s+{_EN_PRON}{_EN_TAIL}$",
        rf"^{_EN_LEAD}(?:and\s+)?(?:back\s+)?(?P<on>on|off)\s+again$",
    ),
    place=_c(
        rf"^{_EN_LEAD}(?:what|how)\s+about\s+(?:in\s+|on\s+)?(?:the\s+)?(?P<place>.+?){_EN_TAIL}$",
        rf"^(?:and|also|now)\s+(?:in\s+|on\s+)?(?:the\s+)?(?P<place>.+?){_EN_TAIL}$",
        r"^(?:in\s+|on\s+)?(?:the\s+)?(?P<place>.+?)\s+(?:too|as well)$",
        rf"^{_EN_LEAD}(?:do\s+)?(?:the\s+)?same\s+(?:thing\s+)?(?:for|in|with|on)\s+(?:the\s+)?(?P<place>.+?)"
        rf"{_EN_TAIL}$",
    ),
    adjust=_c(
        rf"^{_EN_LEAD}(?:make|turn|set|get)\s+{_EN_PRON}\s+(?:a\s+(?:bit|little|little bit|tad)\s+|much\s+|"
        rf"even\s+|some\s+)?(?P<dir>brighter|dimmer|darker|lighter)(?:\s+still)?{_EN_TAIL}$",
        rf"^{_EN_LEAD}(?:a\s+(?:bit|little|little bit|tad)\s+|much\s+|even\s+)?"
        rf"(?P<dir>brighter|dimmer|darker){_EN_TAIL}$",
        rf"^{_EN_LEAD}(?P<dir>dim|brighten)\s+{_EN_PRON}(?:\s+(?:a\s+bit|a\s+little|more|some))?{_EN_TAIL}$",
        rf"^{_EN_LEAD}turn\s+{_EN_PRON}\s+(?P<dir>up|down)(?:\s+(?:a\s+bit|a\s+little|more|some))?{_EN_TAIL}$",
    ),
    level=_c(
        rf"^{_EN_LEAD}(?:set|make|turn|put|dim|change|bring|brighten)\s+{_EN_PRON}\s+(?:to|at|up to|down to)"
        rf"\s+{_EN_PCT}{_EN_TAIL}$",
        rf"^{_EN_LEAD}(?:to\s+)?(?P<level>\d{{1,3}})\s*(?:%|percent|per cent){_EN_TAIL}$",
    ),
    on_words=frozenset({"on"}),
    up_words=frozenset({"brighter", "lighter", "brighten", "up"}),
)

_DE_LEAD = r"(?:(?:und|jetzt|nun|dann|bitte|auch|ok|okay)\s+)*"
_DE_TAIL = r"(?:\s+(?:bitte|wieder|auch|jetzt))*"
_DE_PRON = r"(?:es|sie|das|die|ihn|den)"

_DE = _Table(
    power=_c(
        rf"^{_DE_LEAD}(?:schalte|schalt|mach|mache)\s+{_DE_PRON}\s+(?:wieder\s+)?(?P<on>an|ein|aus){_DE_TAIL}$",
    ),
    place=_c(
        rf"^{_DE_LEAD}(?:was ist mit|wie wäre es mit|wie ist es mit|und)\s+"
        r"(?:dem\s+|der\s+|den\s+|im\s+|in der\s+|in\s+)?(?P<place>.+?)(?:\s+auch)?$",
        r"^(?:im\s+|in der\s+|in\s+)?(?:dem\s+|der\s+|den\s+)?(?P<place>.+?)\s+auch$",
    ),
    adjust=_c(
        rf"^{_DE_LEAD}(?:mach|mache)\s+{_DE_PRON}\s+(?:etwas\s+|ein bisschen\s+|noch\s+|viel\s+)?"
        rf"(?P<dir>heller|dunkler){_DE_TAIL}$",
        rf"^{_DE_LEAD}(?:etwas\s+|ein bisschen\s+|noch\s+)?(?P<dir>heller|dunkler){_DE_TAIL}$",
    ),
    level=_c(
        rf"^{_DE_LEAD}(?:stell|stelle|setz|setze|mach|mache|dimm|dimme)\s+{_DE_PRON}\s+auf\s+"
        r"(?P<level>\d{1,3})\s*(?:%|prozent)?(?:\s+bitte)?$",
    ),
    on_words=frozenset({"an", "ein"}),
    up_words=frozenset({"heller"}),
)

TABLES: dict[str, _Table] = {"en": _EN, "de": _DE}


def parse(text: str, language: str) -> FollowUp | None:
    """What a follow-up asks to change, or None if `text` is not one of the table's follow-up forms."""
    table = TABLES.get(language.split("-", 1)[0].casefold())
    if table is None:
        return None
    said = normalize(text)
    if not said:
        return None
    for pattern in table.power:
        if m := pattern.match(said):
            return FollowUp("power", on=m.group("on") in table.on_words)
    for pattern in table.level:
        if m := pattern.match(said):
            return FollowUp("level", level=max(0, min(100, int(m.group("level")))))
    for pattern in table.adjust:
        if m := pattern.match(said):
            return FollowUp("adjust", step=1 if m.group("dir") in table.up_words else -1)
    for pattern in table.place:
        if (m := pattern.match(said)) and m.group("place").strip():
            return FollowUp("place", place=m.group("place").strip())
    return None
