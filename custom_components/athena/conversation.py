"""The conversation agent: each turn goes to the gateway with what HA knows about where it came from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from homeassistant.components import conversation
from homeassistant.components.conversation import AssistantContent, ChatLog, ConversationInput
from homeassistant.const import MATCH_ALL
from homeassistant.core import HomeAssistant
from homeassistant.helpers import area_registry as ar
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers import intent
from homeassistant.helpers.device_registry import DeviceEntryType, DeviceInfo
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from . import AthenaConfigEntry
from .api import AthenaError, CannotConnect, GatewayTimeout, InvalidAuth
from .const import (
    CONF_PASS_CONVERSATION_ID,
    CONF_TIMEOUT,
    DEFAULT_PASS_CONVERSATION_ID,
    DEFAULT_TIMEOUT,
    DOMAIN,
    LOGGER,
)

# What the user hears when the gateway cannot answer: a voice user must never get silence.
SPEECH_UNREACHABLE = "Sorry, I can't reach Athena right now."
SPEECH_TIMEOUT = "Sorry, Athena is taking too long to answer."
SPEECH_AUTH = "Sorry, Athena refused Home Assistant's token."
SPEECH_FAILED = "Sorry, Athena had a problem answering."

# The gateway accepts up to 100 history messages per turn; HA's chat log holds 5 minutes at most, so this only
# trims a burst of local commands. Even, so user/assistant pairs stay whole.
MAX_HISTORY = 40
# The gateway's limit; HA's own ids are 26-character ULIDs, only API callers pick longer ones.
MAX_CONVERSATION_ID = 256


async def async_setup_entry(
    hass: HomeAssistant, entry: AthenaConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    async_add_entities([AthenaConversationEntity(entry)])


class AthenaConversationEntity(conversation.ConversationEntity):
    _attr_has_entity_name = True
    _attr_name = None

    def __init__(self, entry: AthenaConfigEntry) -> None:
        self.entry = entry
        self._attr_unique_id = entry.entry_id
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, entry.entry_id)},
            name="Athena",
            manufacturer="Athena",
            model="Conversation gateway",
            entry_type=DeviceEntryType.SERVICE,
            configuration_url=entry.runtime_data.url,
        )

    @property
    def supported_languages(self) -> list[str] | Literal["*"]:
        return MATCH_ALL

    async def _async_handle_message(
        self, user_input: ConversationInput, chat_log: ChatLog
    ) -> conversation.ConversationResult:
        options = self.entry.options
        client = self.entry.runtime_data
        payload = self._payload(user_input, chat_log)
        response = intent.IntentResponse(language=user_input.language)
        continue_conversation = False
        try:
            body = await client.converse(payload, float(options.get(CONF_TIMEOUT, DEFAULT_TIMEOUT)))
        except AthenaError as err:
            LOGGER.warning("Athena at %s could not answer: %s", client.url, err)
            speech = _failure_speech(err)
            if isinstance(err, InvalidAuth):
                # HA shows a "re-authenticate" card; the reauth flow asks for the new token.
                self.entry.async_start_reauth(self.hass)
            response.async_set_error(intent.IntentResponseErrorCode.FAILED_TO_HANDLE, speech)
            agent_id = _error_agent_id(self.entity_id)
        else:
            speech, continue_conversation = _fill_response(response, body)
            agent_id = self.entity_id
        chat_log.async_add_assistant_content_without_tools(
            AssistantContent(agent_id=agent_id, content=speech)
        )
        # HA's id, not the gateway's: the satellite hands it back next turn, which keeps HA's chat log (and so
        # the turns HA answered itself) together. The gateway keys its own session on the device anyway.
        return conversation.ConversationResult(
            response=response,
            conversation_id=chat_log.conversation_id,
            continue_conversation=continue_conversation,
        )

    def _payload(self, user_input: ConversationInput, chat_log: ChatLog) -> dict[str, Any]:
        satellite_id: str | None = getattr(user_input, "satellite_id", None)  # HA 2025.10+
        where = _where(self.hass, user_input.device_id, satellite_id)
        payload: dict[str, Any] = {
            "text": user_input.text,
            "language": user_input.language,
            "device_id": user_input.device_id,
            "satellite_id": satellite_id,
            "agent_id": self.entity_id,
            "extra_system_prompt": user_input.extra_system_prompt,
            "user_id": user_input.context.user_id,
            **where,
            "history": unforwarded_turns(chat_log.content, self.entity_id),
        }
        pass_id = self.entry.options.get(CONF_PASS_CONVERSATION_ID, DEFAULT_PASS_CONVERSATION_ID)
        if pass_id and len(chat_log.conversation_id) <= MAX_CONVERSATION_ID:
            # Without a device, the gateway keys the session on this id: a conversation typed in HA's Assist
            # dialog (or sent through its API) stays one Athena session for as long as HA keeps the id.
            payload["conversation_id"] = chat_log.conversation_id
        return {key: value for key, value in payload.items() if value is not None}


def _error_agent_id(agent_id: str) -> str:
    """Marks replies the user heard but Athena never saw, so they are not sent as history later."""
    return f"{agent_id}#error"


def unforwarded_turns(content: Sequence[Any], agent_id: str) -> list[dict[str, str]]:
    """User/assistant turns in HA's chat log since Athena last answered, minus the current input.

    These are the turns HA answered itself ("prefer handling commands locally", sentence triggers): the
    gateway adds them to the device's session so the LLM sees them. Turns where Athena failed are left out;
    the current input has no answer yet, so it never becomes a turn here.
    """
    failed_id = _error_agent_id(agent_id)
    turns: list[dict[str, str]] = []
    pending_user: str | None = None
    for item in content:
        if item.role == "user":
            pending_user = item.content
        elif item.role == "assistant" and item.agent_id == agent_id:
            turns.clear()  # Athena saw everything up to its own answer
            pending_user = None
        elif item.role == "assistant" and item.content:
            if item.agent_id != failed_id:
                if pending_user is not None:
                    turns.append({"role": "user", "content": pending_user})
                turns.append({"role": "assistant", "content": item.content})
            pending_user = None
    return turns[-MAX_HISTORY:]


def _where(hass: HomeAssistant, device_id: str | None, satellite_id: str | None) -> dict[str, str | None]:
    """Device name and area from HA's registries: the satellite entity's own area wins over its device's."""
    devices = dr.async_get(hass)
    device = devices.async_get(device_id) if device_id else None
    area_id: str | None = None
    if satellite_id and (entity := er.async_get(hass).async_get(satellite_id)):
        area_id = entity.area_id
        if device is None and entity.device_id:
            device = devices.async_get(entity.device_id)
    if device is not None:
        area_id = area_id or device.area_id
    area = ar.async_get(hass).async_get_area(area_id) if area_id else None
    return {
        "device_name": (device.name_by_user or device.name) if device else None,
        "area_id": area.id if area else None,
        "area": area.name if area else None,
    }


def _fill_response(response: intent.IntentResponse, body: dict[str, Any]) -> tuple[str, bool]:
    """Copy the gateway's ConversationResult dict into HA's IntentResponse; returns (speech, continue)."""
    answer = body["response"]
    speech: str = answer["speech"]["plain"]["speech"]
    data = answer["data"] if isinstance(answer.get("data"), dict) else {}
    if answer.get("response_type") == "error":
        response.async_set_error(_error_code(data.get("code")), speech)
    else:
        response.async_set_speech(speech)
        if answer.get("response_type") == "query_answer":
            response.response_type = intent.IntentResponseType.QUERY_ANSWER
        response.async_set_results(_targets(data.get("success")), _targets(data.get("failed")))
    return speech, bool(body.get("continue_conversation"))


def _error_code(code: Any) -> intent.IntentResponseErrorCode:
    try:
        return intent.IntentResponseErrorCode(code)
    except ValueError:
        return intent.IntentResponseErrorCode.UNKNOWN


def _targets(items: Any) -> list[intent.IntentResponseTarget]:
    targets: list[intent.IntentResponseTarget] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        try:
            kind = intent.IntentResponseTargetType(item.get("type", "entity"))
        except ValueError:
            kind = intent.IntentResponseTargetType.CUSTOM
        targets.append(intent.IntentResponseTarget(name=item["name"], type=kind, id=item.get("id")))
    return targets


def _failure_speech(err: AthenaError) -> str:
    if isinstance(err, GatewayTimeout):
        return SPEECH_TIMEOUT
    if isinstance(err, InvalidAuth):
        return SPEECH_AUTH
    if isinstance(err, CannotConnect):
        return SPEECH_UNREACHABLE
    return SPEECH_FAILED
