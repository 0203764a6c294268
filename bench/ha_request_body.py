"""What Home Assistant's `llama_cpp` integration sends an OpenAI endpoint each turn, built by HA's own code.

Run it with the Python of a Home Assistant install (2026.8+, where `llama_cpp` ships), e.g. the sid chroot
that `scripts/ha-current` builds::

    cp bench/ha_request_body.py ROOT/tmp/
    chroot ROOT /opt/ha/bin/python /tmp/ha_request_body.py [ENTITIES] [TURNS] [--dump=/tmp/body.json]

It boots an in-process HA with a home of ENTITIES (default 50) exposed entities in 8 areas (lights, switches,
covers, climate, fans, media players, sensors), sets up the Assist API the way a `llama_cpp` conversation
subentry does (recommended options, `llm_hass_api: assist`), fills a chat log with TURNS (default 20) turns
(every third one a device command with its tool call and tool result, as HA keeps them; some others a
`GetLiveContext` call, run for real, whose result lists every exposed entity's state), and builds the body
with `llama_cpp.entity`'s own converters and request arguments. `litellm` sends the same shape (same
converters, its own options). Prints one JSON line: the body's size in bytes and what it is made of.
The request Athena's `ATHENA_MAX_BODY_BYTES_OPENAI` default must fit is that body, with room to spare.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

AREAS = ["Kitchen", "Living Room", "Bedroom", "Office", "Bathroom", "Hallway", "Garage", "Garden"]
# (domain, state, attributes, names): a home's mix of what HA exposes to Assist by default.
KINDS: list[tuple[str, str, dict[str, Any], list[str]]] = [
    ("light", "on", {"brightness": 180, "color_mode": "brightness"}, ["Ceiling Light", "Lamp", "Spots"]),
    ("switch", "off", {}, ["Coffee Machine", "Fan Plug", "Heater Plug"]),
    ("cover", "open", {"current_position": 100}, ["Blinds", "Shutter"]),
    (
        "climate",
        "heat",
        {"temperature": 21, "current_temperature": 20.5, "hvac_modes": ["off", "heat"]},
        ["Thermostat"],
    ),
    ("fan", "off", {"percentage": 0}, ["Ceiling Fan"]),
    ("media_player", "idle", {"volume_level": 0.3}, ["Speaker", "TV"]),
    ("sensor", "21.4", {"device_class": "temperature", "unit_of_measurement": "°C"}, ["Temperature"]),
    ("sensor", "48", {"device_class": "humidity", "unit_of_measurement": "%"}, ["Humidity"]),
]


def home(count: int) -> list[tuple[str, str, str, str, dict[str, Any]]]:
    """(entity_id, name, area, state, attributes) for `count` entities, spread over the areas."""
    out = []
    flat = [(d, s, a, n) for d, s, a, names in KINDS for n in names]
    i = 0
    while len(out) < count:
        domain, state, attrs, name = flat[i % len(flat)]
        area = AREAS[(i // len(flat) + i) % len(AREAS)]
        full = f"{area} {name}"
        object_id = full.lower().replace(" ", "_") + (f"_{i}" if i >= len(flat) * len(AREAS) else "")
        out.append((f"{domain}.{object_id}", full, area, state, {**attrs, "friendly_name": full}))
        i += 1
    return out


AGENT = "conversation.llama_cpp"


def add_call(chat_log: Any, tool: Any, result: Any) -> None:
    """A tool call of the model and its result, as the chat log keeps them."""
    from homeassistant.components import conversation

    chat_log.async_add_assistant_content_without_tools(
        conversation.AssistantContent(agent_id=AGENT, content=None, tool_calls=[tool])
    )
    chat_log.async_add_assistant_content_without_tools(
        conversation.ToolResultContent(
            agent_id=AGENT, tool_call_id=tool.id, tool_name=tool.tool_name, result=result
        )
    )


async def measure(entities: int, turns: int, dump: str | None = None) -> dict[str, Any]:
    from homeassistant import auth, bootstrap, config_entries, loader
    from homeassistant.components import conversation
    from homeassistant.components.homeassistant.exposed_entities import async_expose_entity
    from homeassistant.components.llama_cpp import entity as llama
    from homeassistant.components.llama_cpp.const import (
        RECOMMENDED_MAX_TOKENS,
        RECOMMENDED_TEMPERATURE,
        RECOMMENDED_TOP_P,
    )
    from homeassistant.core import Context, HomeAssistant
    from homeassistant.helpers import area_registry as ar
    from homeassistant.helpers import chat_session, llm
    from homeassistant.helpers import entity_registry as er
    from homeassistant.helpers.json import json_dumps
    from homeassistant.setup import async_setup_component

    config_dir = tempfile.mkdtemp(prefix="ha-body-")
    hass = HomeAssistant(config_dir)
    hass.config.language = "en"
    loader.async_setup(hass)
    hass.config_entries = config_entries.ConfigEntries(hass, {})
    assert await bootstrap.async_load_base_functionality(hass)  # the registries, as `hass` loads them
    hass.auth = await auth.auth_manager_from_config(hass, [{"type": "homeassistant"}], [])
    with socket.socket() as s:  # `intent` needs `http`, which listens: on a free loopback port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    http = {"http": {"server_host": ["127.0.0.1"], "server_port": port}}
    assert await async_setup_component(hass, "http", http)
    await hass.async_start()
    for component in (
        "homeassistant",
        "intent",
        "conversation",
        "llm",
        "light",
        "switch",
        "cover",
        "climate",
        "fan",
        "media_player",
        "sensor",
        "todo",
        "timer",
        "assist_satellite",
    ):
        assert await async_setup_component(hass, component, {}), component

    areas = ar.async_get(hass)
    area_ids = {name: areas.async_get_or_create(name).id for name in AREAS}
    ents = er.async_get(hass)
    for entity_id, name, area, state, attrs in home(entities):
        domain, object_id = entity_id.split(".", 1)
        entry = ents.async_get_or_create(
            domain, "bench", object_id, suggested_object_id=object_id, original_name=name
        )
        ents.async_update_entity(entry.entity_id, area_id=area_ids[area])
        hass.states.async_set(entry.entity_id, state, attrs)
        async_expose_entity(hass, conversation.DOMAIN, entry.entity_id, True)
    await hass.async_block_till_done()

    llm_context = llm.LLMContext(
        platform="llama_cpp", context=Context(), language="en", assistant=conversation.DOMAIN, device_id=None
    )
    with (
        chat_session.async_get_chat_session(hass, None, context=None) as session,
        conversation.async_get_chat_log(hass, session) as chat_log,
    ):
        await chat_log.async_provide_llm_data(llm_context, [llm.LLM_API_ASSIST], None, None)
        live = next(t for t in chat_log.llm_api.tools if t.name == "homeassistant__GetLiveContext")
        for t in range(turns):
            chat_log.async_add_user_content(
                conversation.UserContent(
                    content=f"Question number {t}: what is the weather like on Saturday in the afternoon?"
                )
            )
            if t % 3 == 0:  # a device command: the model's tool call and HA's result, kept in the log
                # `external` only lets the log take a call it did not run; the body is the same.
                tool = llm.ToolInput(
                    id=f"call_{t}",
                    tool_name="intent__HassTurnOn",
                    tool_args={"area": "Kitchen", "domain": ["light"]},
                    external=True,
                )
                result = llm.ToolResult(
                    data={
                        "speech": {},
                        "response_type": "action_done",
                        "data": {
                            "success": [
                                {"name": "Kitchen", "type": "area", "id": "kitchen"},
                                {
                                    "name": "Kitchen Ceiling Light",
                                    "type": "entity",
                                    "id": "light.kitchen_ceiling_light",
                                },
                            ],
                            "failed": [],
                        },
                    }
                )
                add_call(chat_log, tool, result)
            elif t % 5 == 1:  # "what is on?": GetLiveContext, run for real (every exposed entity's state)
                tool = llm.ToolInput(id=f"call_{t}", tool_name=live.name, tool_args={}, external=True)
                add_call(chat_log, tool, await live.async_call(hass, tool, llm_context))
            chat_log.async_add_assistant_content_without_tools(
                conversation.AssistantContent(
                    agent_id=AGENT,
                    content="On Saturday afternoon it will be sunny, around 22 degrees, with a light breeze.",
                )
            )
        chat_log.async_add_user_content(conversation.UserContent(content="And what about Sunday?"))

        assert chat_log.llm_api is not None
        tools = [
            llama._format_tool(tool, chat_log.llm_api.custom_serializer) for tool in chat_log.llm_api.tools
        ]
        messages = [m for c in chat_log.content if (m := llama._convert_content_to_chat_message(c))]
        # What `_async_handle_chat_log` passes to client.chat.completions.create (recommended options).
        body = {
            "messages": messages,
            "model": "llama3.2",
            "tools": tools,
            "max_tokens": RECOMMENDED_MAX_TOKENS,
            "top_p": RECOMMENDED_TOP_P,
            "temperature": RECOMMENDED_TEMPERATURE,
            "user": chat_log.conversation_id,
            "stream": True,
        }
    raw = json_dumps(body).encode()
    if dump:
        await hass.async_add_executor_job(Path(dump).write_bytes, raw)
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
    await hass.async_stop()
    return {
        "ha": __import__("homeassistant.const").const.__version__,
        "entities": entities,
        "turns": turns,
        "body_bytes": len(raw),
        "system_prompt_bytes": len(json.dumps(system)),
        "tools": len(tools),
        "tools_bytes": len(json_dumps(tools)),
        "messages": len(messages),
        "tool_names": [t["function"]["name"] for t in tools],
    }


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--dump=")]
    dump = next((a.removeprefix("--dump=") for a in sys.argv[1:] if a.startswith("--dump=")), None)
    entities = int(args[0]) if args else 50
    turns = int(args[1]) if len(args) > 1 else 20
    print(json.dumps(asyncio.run(measure(entities, turns, dump))))


if __name__ == "__main__":
    main()
