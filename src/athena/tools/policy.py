"""Which tools the model is offered: an allow and a deny list of globs over the tools' remote names.

A tool is offered when some allow glob matches it and no deny glob does (deny wins). Globs are `fnmatch`
patterns, case-sensitive: `*`, `?`, `[abc]`.

Home Assistant's defaults offer the Assist API's assistant-level tools only. A voice user is whoever stands
near a satellite, so nothing that administers Home Assistant is ever offered by default:

- HA 2026.8+ is asked on `/api/mcp/assist`, which serves the Assist API alone (bounded by what is exposed to
  Assist); the lists below still apply there.
- On the default `/api/mcp` and on SSE, HA 2026.11 with an admin token also lists the "Home Assistant" API's
  admin tools (`config__*`, `homeassistant__render_template`, `homeassistant__call_action`, `search__search`,
  `system_log__*`, ...): they match no allow glob, and the deny list names them besides.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

# The Assist API's tools, in both naming schemes (2026.7+ prefixes the providing domain; older HA does not).
HA_ALLOW: tuple[str, ...] = (
    "*__Hass*",  # intent tools of any domain: intent__HassTurnOn, light__HassLightSet, todo__HassListAddItem,
    #              assist_satellite__HassBroadcast, the timers (intent__HassStartTimer, ...)
    "Hass*",  # the same before 2026.7
    "homeassistant__GetLiveContext",
    "GetLiveContext",
    "llm__GetDateTime",
    "GetDateTime",
    "todo__*",
    "todo_get_items",
    "calendar__*",
    "calendar_get_events",
    "script__*",  # scripts exposed to Assist (before 2026.7 a script's bare name matches as script__<name>)
)
# Home Assistant's admin API and anything that runs arbitrary actions or templates: never by default.
HA_DENY: tuple[str, ...] = (
    "config__*",
    "hassio__*",
    "history__*",
    "search__*",
    "system_health__*",
    "system_log__*",
    "backup__*",
    "homeassistant__render_template",
    "homeassistant__search_actions",
    "homeassistant__call_action",
    "*render_template*",
    "*call_action*",
    "*call_service*",
)


@dataclass(frozen=True, slots=True)
class ToolPolicy:
    allow: tuple[str, ...] = ("*",)
    deny: tuple[str, ...] = ()

    @classmethod
    def of(
        cls, allow: Sequence[str] | None, deny: Sequence[str] | None, *, default: ToolPolicy
    ) -> ToolPolicy:
        """`allow` / `deny` replace the default's own list when given (None keeps it)."""
        return cls(
            tuple(allow) if allow is not None else default.allow,
            tuple(deny) if deny is not None else default.deny,
        )

    def allows(self, names: Iterable[str]) -> bool:
        """Offered when one of the tool's names (its remote name, and any alias it is known by) is allowed and
        none is denied."""
        names = tuple(names)
        if any(fnmatchcase(n, g) for n in names for g in self.deny):
            return False
        return any(fnmatchcase(n, g) for n in names for g in self.allow)


HOME_ASSISTANT = ToolPolicy(HA_ALLOW, HA_DENY)
ANYTHING = ToolPolicy()
