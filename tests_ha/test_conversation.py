"""The agent inside a test Home Assistant, talking to a real gateway process whose LLM is the fake one."""

from __future__ import annotations

from typing import Any

from homeassistant.components import conversation
from homeassistant.components.conversation import AssistantContent
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import Context, HomeAssistant
from homeassistant.helpers import area_registry as ar
from homeassistant.helpers import chat_session, intent
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.common import MockConfigEntry

import custom_components.athena  # noqa: F401 - module-level import: HA's loader must find our integration
from custom_components.athena.const import CONF_PASS_CONVERSATION_ID, CONF_TIMEOUT
from custom_components.athena.conversation import (
    MAX_HISTORY,
    SPEECH,
    _where,
    unforwarded_turns,
)
from tests.support.fake_llm import said
from tests.support.gateway import GatewayProcess
from tests_ha.support import FakeLLMProcess, closed_port_url, setup_athena

AGENT = "conversation.athena"


def _satellite(hass: HomeAssistant, area_name: str, name: str) -> dr.DeviceEntry:
    """A device in HA's registry standing where a voice satellite would, placed in an area."""
    owner = MockConfigEntry(domain="test")
    owner.add_to_hass(hass)
    area = ar.async_get(hass).async_get_or_create(area_name)
    devices = dr.async_get(hass)
    device = devices.async_get_or_create(
        config_entry_id=owner.entry_id, identifiers={("test", name)}, name=name
    )
    return devices.async_update_device(device.id, area_id=area.id)


async def _say(
    hass: HomeAssistant, text: str, *, device_id: str | None = None, conversation_id: str | None = None
) -> conversation.ConversationResult:
    return await conversation.async_converse(
        hass, text, conversation_id, Context(), language="en", agent_id=AGENT, device_id=device_id
    )


def _speech(result: conversation.ConversationResult) -> str:
    return result.response.speech["plain"]["speech"]


async def _session(hass: HomeAssistant, gateway: GatewayProcess, device: str) -> tuple[int, Any]:
    return await hass.async_add_executor_job(gateway.request, "GET", f"/athena/sessions/{device}")


async def test_turn_carries_device_area_and_keeps_the_device_session(
    hass: HomeAssistant, gateway: GatewayProcess, llm: FakeLLMProcess
) -> None:
    await setup_athena(hass, gateway.url, gateway.token)
    device = _satellite(hass, "Kitchen", "Kitchen satellite")

    first = await _say(hass, "read me the shopping list", device_id=device.id)
    assert _speech(first) == "Reply to: read me the shopping list"
    assert first.response.response_type == intent.IntentResponseType.QUERY_ANSWER  # an LLM answer
    assert first.response.error_code is None
    assert first.continue_conversation is False
    as_dict = first.as_dict()
    assert as_dict["response"]["data"]["success"] == [] and as_dict["response"]["data"]["failed"] == []
    # HA's own conversation id comes back, so HA's chat session (and chat log) continue next turn.
    assert first.conversation_id and not first.conversation_id.startswith("oneoff")

    (messages,) = await llm.chat_requests()
    assert messages[0]["role"] == "system"
    note = messages[-1]["content"].split("\n", 1)[0]  # where and when: on the newest user message
    assert '"Kitchen satellite"' in note and '"Kitchen"' in note

    # A new HA conversation from the same device (the satellite forgot its id): the gateway's device session
    # still holds the first turn.
    second = await _say(hass, "and the one for tomorrow", device_id=device.id)
    assert second.conversation_id != first.conversation_id
    assert _speech(second) == "Reply to: and the one for tomorrow"
    messages = (await llm.chat_requests())[-1]
    assert [(m["role"], said(m)) for m in messages[1:]] == [
        ("user", "read me the shopping list"),
        ("assistant", "Reply to: read me the shopping list"),
        ("user", "and the one for tomorrow"),
    ]

    status, described = await _session(hass, gateway, device.id)
    assert status == 200
    assert described["device"] == device.id
    assert described["turns"] == 2


async def test_question_keeps_the_microphone_open(
    hass: HomeAssistant, gateway: GatewayProcess, llm: FakeLLMProcess
) -> None:
    await setup_athena(hass, gateway.url, gateway.token)
    device = _satellite(hass, "Office", "Office satellite")
    await llm.configure(reply="Which room do you mean?")
    result = await _say(hass, "turn it up", device_id=device.id)
    assert _speech(result) == "Which room do you mean?"
    assert result.continue_conversation is True


async def test_turns_ha_answered_itself_are_forwarded_once(
    hass: HomeAssistant, gateway: GatewayProcess, llm: FakeLLMProcess
) -> None:
    await setup_athena(hass, gateway.url, gateway.token)
    device = _satellite(hass, "Living Room", "Living room satellite")
    first = await _say(hass, "hello there", device_id=device.id)
    conv_id = first.conversation_id
    assert conv_id is not None

    # What HA's pipeline does when "prefer handling commands locally" matches: it answers the turn itself and
    # writes it into the same chat log, without calling the agent. (Content objects, not a ConversationInput:
    # that one gains required fields in newer HA, e.g. satellite_id in 2025.10.)
    with (
        chat_session.async_get_chat_session(hass, conv_id) as session,
        conversation.async_get_chat_log(hass, session) as chat_log,
    ):
        chat_log.async_add_user_content(conversation.UserContent(content="turn on the lamp"))
        chat_log.async_add_assistant_content_without_tools(
            AssistantContent(agent_id=conversation.HOME_ASSISTANT_AGENT, content="Turned on the lamp")
        )

    second = await _say(hass, "what did I just ask you?", device_id=device.id, conversation_id=conv_id)
    assert second.conversation_id == conv_id
    third = await _say(hass, "thanks", device_id=device.id, conversation_id=conv_id)
    assert third.conversation_id == conv_id

    requests = await llm.chat_requests()
    assert [(m["role"], said(m)) for m in requests[1][1:]] == [
        ("user", "hello there"),
        ("assistant", "Reply to: hello there"),
        ("user", "turn on the lamp"),
        ("assistant", "Turned on the lamp"),
        ("user", "what did I just ask you?"),
    ]
    # Next turn: the local turn sits in the gateway's session once, not sent again.
    contents = [said(m) for m in requests[2]]
    assert contents.count("turn on the lamp") == 1
    assert contents[-1] == "thanks"


async def test_conversation_id_option_without_a_device(
    hass: HomeAssistant, gateway: GatewayProcess, llm: FakeLLMProcess
) -> None:
    entry = await setup_athena(hass, gateway.url, gateway.token)
    first = await _say(hass, "remember the number seven")
    await _say(hass, "what number?", conversation_id=first.conversation_id)
    with_id = (await llm.chat_requests())[-1]
    assert "remember the number seven" in [m["content"] for m in with_id]

    hass.config_entries.async_update_entry(entry, options={CONF_PASS_CONVERSATION_ID: False})
    first = await _say(hass, "remember the number eight")
    await _say(hass, "which number?", conversation_id=first.conversation_id)
    without_id = (await llm.chat_requests())[-1]
    assert "remember the number eight" not in [m["content"] for m in without_id]


async def test_gateway_down_is_spoken(hass: HomeAssistant) -> None:
    await setup_athena(hass, closed_port_url(), "token")
    result = await _say(hass, "what time is it?")
    assert result.response.response_type is intent.IntentResponseType.ERROR
    assert result.response.error_code is intent.IntentResponseErrorCode.FAILED_TO_HANDLE
    assert _speech(result) == SPEECH["en"]["unreachable"]
    assert result.conversation_id


async def test_slow_gateway_is_spoken_after_the_timeout_option(
    hass: HomeAssistant, gateway: GatewayProcess, llm: FakeLLMProcess
) -> None:
    await setup_athena(hass, gateway.url, gateway.token, options={CONF_TIMEOUT: 1})
    await llm.configure(delay=3)
    result = await _say(hass, "tell me a long story")
    assert result.response.error_code is intent.IntentResponseErrorCode.FAILED_TO_HANDLE
    assert _speech(result) == SPEECH["en"]["timeout"]


async def test_llm_failure_passes_the_gateways_sentence(
    hass: HomeAssistant, gateway: GatewayProcess, llm: FakeLLMProcess
) -> None:
    await setup_athena(hass, gateway.url, gateway.token)
    await llm.configure(status=500)
    result = await _say(hass, "what's the weather?")
    assert result.response.response_type is intent.IntentResponseType.ERROR
    assert result.response.error_code is intent.IntentResponseErrorCode.FAILED_TO_HANDLE
    assert _speech(result).strip()
    assert _speech(result) not in (SPEECH["en"]["unreachable"], SPEECH["en"]["timeout"])


async def test_wrong_token_is_spoken(hass: HomeAssistant, gateway: GatewayProcess) -> None:
    await setup_athena(hass, gateway.url, "revoked-token")
    result = await _say(hass, "hello")
    assert result.response.error_code is intent.IntentResponseErrorCode.FAILED_TO_HANDLE
    assert _speech(result) == SPEECH["en"]["auth"]


async def test_unload(hass: HomeAssistant, gateway: GatewayProcess) -> None:
    entry = await setup_athena(hass, gateway.url, gateway.token)
    assert conversation.async_get_agent(hass, AGENT) is not None
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.NOT_LOADED
    assert conversation.async_get_agent(hass, AGENT) is None
    # And back: a reload after unload works.
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert conversation.async_get_agent(hass, AGENT) is not None


def test_unforwarded_turns_skips_what_athena_saw_and_failed_turns() -> None:
    """The chat-log walk on its own, with the content types HA's chat log holds (HA 2026.x's record of a
    command it handled itself included: a text-less tool call under the pipeline agent's id)."""
    user = conversation.UserContent
    said = [
        conversation.SystemContent(content=""),
        user(content="one"),
        AssistantContent(agent_id=AGENT, content="athena one"),
        user(content="lights on"),
        AssistantContent(agent_id="conversation.home_assistant", content="Turned on the lights"),
        user(content="lost"),
        AssistantContent(agent_id=AGENT, content="Sorry, I cannot reach Athena."),  # failed: counts as seen
        user(content="timer"),
        AssistantContent(agent_id=AGENT, content=None),  # 2026.x: HA ran an intent as Athena's tool call
        AssistantContent(agent_id="sentence_trigger", content="Timer set"),
        user(content="current question"),
    ]
    assert unforwarded_turns(said, AGENT) == [
        {"role": "user", "content": "timer"},
        {"role": "assistant", "content": "Timer set"},
    ]
    assert unforwarded_turns([*said[:3], user(content="next")], AGENT) == []

    many = [user(content="x"), AssistantContent(agent_id="conversation.home_assistant", content="y")] * 30
    trimmed = unforwarded_turns([*many, user(content="now")], AGENT)
    assert len(trimmed) == MAX_HISTORY and trimmed[0]["role"] == "user"


async def test_satellite_entity_area_wins(hass: HomeAssistant) -> None:
    """HA 2025.10+ also names the satellite entity; its own area (set on the entity) beats its device's."""
    device = _satellite(hass, "Hallway", "Hall satellite")
    bedroom = ar.async_get(hass).async_get_or_create("Bedroom")
    entities = er.async_get(hass)
    sat = entities.async_get_or_create(
        "assist_satellite", "test", "hall-sat", device_id=device.id, suggested_object_id="hall"
    )
    assert _where(hass, None, sat.entity_id) == {
        "device_name": "Hall satellite",
        "area_id": ar.async_get(hass).async_get_area_by_name("Hallway").id,
        "area": "Hallway",
    }
    entities.async_update_entity(sat.entity_id, area_id=bedroom.id)
    assert _where(hass, device.id, sat.entity_id)["area"] == "Bedroom"
    assert _where(hass, device.id, None)["area"] == "Hallway"
    assert _where(hass, None, None) == {"device_name": None, "area_id": None, "area": None}
