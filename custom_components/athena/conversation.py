"""The conversation agent: each turn goes to the gateway with what HA knows about where it came from.

The answer is streamed into HA's chat log as the gateway writes it (HA's pipeline starts speaking after the
first sentence or so); the gateway's final result then fills HA's IntentResponse (targets, response type).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from homeassistant.components import conversation
from homeassistant.components.conversation import ChatLog, ConversationInput
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

# What the user hears when the gateway cannot answer (a voice user must never get silence), in the languages
# Athena's "start over" knows; others hear English.
SPEECH: dict[str, dict[str, str]] = {
    "en": {
        "unreachable": "Sorry, I can't reach Athena right now.",
        "timeout": "Sorry, Athena is taking too long to answer.",
        "auth": "Sorry, Athena refused Home Assistant's token.",
        "failed": "Sorry, Athena had a problem answering.",
    },
    "de": {
        "unreachable": "Entschuldigung, ich erreiche Athena gerade nicht.",
        "timeout": "Entschuldigung, Athena braucht zu lange für eine Antwort.",
        "auth": "Entschuldigung, Athena hat den Schlüssel von Home Assistant abgelehnt.",
        "failed": "Entschuldigung, Athena hatte ein Problem mit der Antwort.",
    },
    "fr": {
        "unreachable": "Désolé, je n'arrive pas à joindre Athena pour le moment.",
        "timeout": "Désolé, Athena met trop de temps à répondre.",
        "auth": "Désolé, Athena a refusé le jeton de Home Assistant.",
        "failed": "Désolé, Athena a eu un problème pour répondre.",
    },
    "es": {
        "unreachable": "Lo siento, ahora mismo no puedo contactar con Athena.",
        "timeout": "Lo siento, Athena está tardando demasiado en responder.",
        "auth": "Lo siento, Athena ha rechazado el token de Home Assistant.",
        "failed": "Lo siento, Athena ha tenido un problema al responder.",
    },
    "nl": {
        "unreachable": "Sorry, ik kan Athena nu niet bereiken.",
        "timeout": "Sorry, Athena doet er te lang over om te antwoorden.",
        "auth": "Sorry, Athena heeft het token van Home Assistant geweigerd.",
        "failed": "Sorry, Athena had een probleem met het antwoord.",
    },
}

# The gateway accepts up to 100 history messages per turn; HA's chat log holds 5 minutes at most, so this only
# trims a burst of local commands. Even, so user/assistant pairs stay whole.
MAX_HISTORY = 40
# The gateway's limit; HA's own ids are 26-character ULIDs, only API callers pick longer ones.
MAX_CONVERSATION_ID = 256


async def async_setup_entry(
    hass: HomeAssistant, entry: AthenaConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    async_add_entities([AthenaConversationEntity(entry)])


@dataclass
class _Outcome:
    """What a streamed turn ended with: the gateway's result, or the sentence said instead of one."""

    result: dict[str, Any] | None = None
    error: str | None = None


class AthenaConversationEntity(conversation.ConversationEntity):
    _attr_has_entity_name = True
    _attr_name = None
    _attr_supports_streaming = True  # read by HA 2025.7+; older versions stream without asking

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
        limit = float(self.entry.options.get(CONF_TIMEOUT, DEFAULT_TIMEOUT))
        payload = self._payload(user_input, chat_log)
        response = intent.IntentResponse(language=user_input.language)
        outcome = _Outcome()
        stream = self._deltas(payload, limit, user_input.language, outcome)
        async for _content in chat_log.async_add_delta_content_stream(self.entity_id, stream):
            pass  # HA's chat log keeps the content; its listener streams it to the pipeline (and TTS)
        continue_conversation = False
        if outcome.result is not None:
            _, continue_conversation = _fill_response(response, outcome.result)
        else:
            response.async_set_error(intent.IntentResponseErrorCode.FAILED_TO_HANDLE, outcome.error or "")
        # HA's id, not the gateway's: the satellite hands it back next turn, which keeps HA's chat log (and so
        # the turns HA answered itself) together. The gateway keys its own session on the device anyway.
        return conversation.ConversationResult(
            response=response,
            conversation_id=chat_log.conversation_id,
            continue_conversation=getattr(chat_log, "continue_conversation", continue_conversation),
        )

    async def _deltas(
        self, payload: dict[str, Any], limit: float, language: str, outcome: _Outcome
    ) -> AsyncIterator[dict[str, str]]:
        """The gateway's stream as HA's chat-log deltas: the role first, then the text as it comes. A failure,
        before or after words were said, ends in one more sentence that says so (never silence)."""
        client = self.entry.runtime_data
        yield {"role": "assistant"}
        said = False
        try:
            async for event in client.converse_stream(payload, limit):
                if event.get("event") == "delta" and isinstance(event.get("text"), str):
                    said = True
                    yield {"content": event["text"]}
                elif event.get("event") == "result":
                    outcome.result = event["result"]
        except AthenaError as err:
            LOGGER.warning("Athena at %s could not answer: %s", client.url, err)
            if isinstance(err, InvalidAuth):
                # HA shows a "re-authenticate" card; the reauth flow asks for the new token.
                self.entry.async_start_reauth(self.hass)
            outcome.result, outcome.error = None, _failure_speech(err, language)
        if outcome.result is None and outcome.error is None:
            LOGGER.warning("Athena at %s ended its answer without a result", client.url)
            outcome.error = _speech(language, "failed")
        final = outcome.error or _result_speech(outcome.result)
        if outcome.error is not None or _is_error(outcome.result):
            if said:  # a new message: HA's TTS keeps it apart from the words already spoken
                yield {"role": "assistant"}
            yield {"content": final}
        elif not said:
            yield {"content": final}

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


def unforwarded_turns(content: Sequence[Any], agent_id: str) -> list[dict[str, str]]:
    """User/assistant turns in HA's chat log since Athena last answered, minus the current input.

    These are the turns HA answered itself ("prefer handling commands locally", sentence triggers): the
    gateway adds them to the device's session so the LLM sees them. The current input has no answer yet, so it
    never becomes a turn here. Only Athena's spoken answers count as Athena's: HA 2026.x records a command it
    handled itself as a tool call of the pipeline's agent (text-less content carrying Athena's agent id).
    """
    turns: list[dict[str, str]] = []
    pending_user: str | None = None
    for item in content:
        if item.role == "user":
            pending_user = item.content
        elif item.role != "assistant" or not item.content:
            continue
        elif item.agent_id == agent_id:
            turns.clear()  # Athena saw everything up to its own answer (or failed to: then it is not history)
            pending_user = None
        else:
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


def _speech(language: str | None, key: str) -> str:
    base = (language or "en").replace("_", "-").split("-", 1)[0].casefold()
    return SPEECH.get(base, SPEECH["en"])[key]


def _failure_speech(err: AthenaError, language: str | None) -> str:
    if isinstance(err, GatewayTimeout):
        return _speech(language, "timeout")
    if isinstance(err, InvalidAuth):
        return _speech(language, "auth")
    if isinstance(err, CannotConnect):
        return _speech(language, "unreachable")
    return _speech(language, "failed")


def _result_speech(result: dict[str, Any] | None) -> str:
    return str(result["response"]["speech"]["plain"]["speech"]) if result else ""


def _is_error(result: dict[str, Any] | None) -> bool:
    return bool(result) and result["response"].get("response_type") == "error"
