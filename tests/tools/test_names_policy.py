"""What the model is offered and under which name: HA's defaults against the tool lists real HA versions
serve, and names valid for every backend, stable whatever else is listed."""

from __future__ import annotations

from athena.tools import names
from athena.tools.policy import HOME_ASSISTANT, ToolPolicy

# As listed by HA 2025.4.4's MCP server (SSE, the Assist API) with the demo home.
HA_2025_4 = [
    "HassTurnOn", "HassTurnOff", "HassSetPosition", "HassCancelAllTimers", "HassClimateSetTemperature",
    "HassHumidifierSetpoint", "HassHumidifierMode", "HassLightSet", "HassMediaUnpause", "HassMediaPause",
    "HassMediaNext", "HassMediaPrevious", "HassSetVolume", "HassVacuumStart", "HassVacuumReturnToBase",
    "GetLiveContext",
]
# As listed by HA 2026.11.0 at /api/mcp/assist (the Assist API) with the demo home.
HA_2026_ASSIST = [
    "assist_satellite__HassBroadcast", "climate__HassClimateSetTemperature", "fan__HassFanSetSpeed",
    "homeassistant__GetLiveContext", "humidifier__HassHumidifierSetpoint", "humidifier__HassHumidifierMode",
    "intent__HassTurnOn", "intent__HassTurnOff", "intent__HassSetPosition", "intent__HassStopMoving",
    "intent__HassCancelAllTimers", "light__HassLightSet", "llm__GetDateTime",
    "media_player__HassMediaUnpause", "media_player__HassMediaPause", "media_player__HassMediaNext",
    "media_player__HassMediaPrevious",
    "media_player__HassSetVolume", "media_player__HassSetVolumeRelative", "media_player__HassMediaPlayerMute",
    "media_player__HassMediaPlayerUnmute", "vacuum__HassVacuumStart", "vacuum__HassVacuumReturnToBase",
    "vacuum__HassVacuumCleanArea",
]
# What HA 2026.11.0's default /api/mcp (and its SSE endpoint) adds for an admin token: the admin API.
HA_2026_ADMIN = [
    "config__get_config_entries", "config__reload_config_entry", "config__search_integrations",
    "homeassistant__render_template", "homeassistant__search_actions", "homeassistant__call_action",
    "search__search", "system_health__get_system_info", "system_log__get_entries", "system_log__get_logs",
    # not in the demo home, but in HA 2026.11's admin API too
    "hassio__get_addons", "history__get_history",
]


def test_every_assistant_tool_of_both_versions_is_offered_by_default() -> None:
    for remote in HA_2025_4 + HA_2026_ASSIST:
        assert HOME_ASSISTANT.allows([remote]), remote
    for extra in ("todo__HassListAddItem", "todo__get_items", "calendar__get_events", "calendar_get_events",
                  "intent__HassStartTimer", "script__good_morning"):
        assert HOME_ASSISTANT.allows([extra]), extra


def test_no_admin_tool_is_offered_by_default() -> None:
    for remote in HA_2026_ADMIN:
        assert not HOME_ASSISTANT.allows([remote]), remote
    # Nothing that is not clearly assistant-level either: unknown tools stay out.
    for remote in ("automation__create", "frobnicate", "homeassistant__restart", "good_morning"):
        assert not HOME_ASSISTANT.allows([remote]), remote


def test_a_script_of_old_ha_is_matched_by_its_2026_name() -> None:
    assert HOME_ASSISTANT.allows(["good_morning", "script__good_morning"])
    no_scripts = ToolPolicy.of(None, ["script__*"], default=HOME_ASSISTANT)
    assert not no_scripts.allows(["good_morning", "script__good_morning"])


def test_overrides_replace_their_own_list_and_deny_wins() -> None:
    only_lights = ToolPolicy.of(["HassTurn*", "intent__HassTurn*"], None, default=HOME_ASSISTANT)
    assert only_lights.allows(["intent__HassTurnOn"]) and not only_lights.allows(["GetLiveContext"])
    everything = ToolPolicy.of(["*"], None, default=HOME_ASSISTANT)
    assert everything.allows(["config__fancy_new_tool"]) is False  # the default deny list still holds
    assert not everything.allows(["homeassistant__render_template"])
    assert ToolPolicy.of(["*"], [], default=HOME_ASSISTANT).allows(["homeassistant__render_template"])


def test_ha_names_are_the_same_on_every_version() -> None:
    old = {names.home_assistant(r) for r in HA_2025_4}
    new = {names.home_assistant(r) for r in HA_2026_ASSIST}
    assert old <= new | {"HassCancelAllTimers"}
    assert {"HassTurnOn", "HassTurnOff", "HassLightSet", "GetLiveContext", "GetDateTime"} <= new
    assert names.home_assistant("script__good_morning") == "good_morning"
    assert names.home_assistant("GetLiveContext") == "GetLiveContext"


def test_names_are_valid_and_stable() -> None:
    long = "a_tool_with_a_name_far_longer_than_any_backend_allows_for_function_names"
    wanted = {
        ("weather", "forecast"): names.qualified("weather", "forecast"),
        ("weather", "get.current temp"): names.qualified("weather", "get.current temp"),
        ("weather", long): names.qualified("weather", long),
        ("home_assistant", "intent__HassTurnOn"): names.home_assistant("intent__HassTurnOn"),
    }
    got = names.assign(wanted)
    assert got[("weather", "forecast")] == "weather__forecast"
    assert got[("weather", "get.current temp")] == "weather__get_current_temp"
    assert got[("home_assistant", "intent__HassTurnOn")] == "HassTurnOn"
    cut = got[("weather", long)]
    assert len(cut) == 64 and cut.startswith("weather__a_tool_with")
    assert names.unique(got.values())
    # The same tool keeps its name whatever else is listed, in any order.
    alone = names.assign({("weather", long): names.qualified("weather", long)})
    assert alone[("weather", long)] == cut
    assert names.assign(dict(reversed(list(wanted.items())))) == got


def test_colliding_names_get_their_own_suffix() -> None:
    wanted = {("a", "x__y"): "same", ("b", "z"): "same", ("c", "w"): "other"}
    got = names.assign(wanted)
    assert got[("c", "w")] == "other"
    assert got[("a", "x__y")] != got[("b", "z")]
    assert all(n.startswith("same_") for k, n in got.items() if k != ("c", "w"))
    assert names.unique(got.values())
