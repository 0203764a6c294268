"""Config and options flows, checked against a real gateway process (and real servers that are not Athena)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from homeassistant import config_entries
from homeassistant.components import conversation
from homeassistant.const import CONF_TOKEN, CONF_URL
from homeassistant.core import Context, HomeAssistant
from homeassistant.data_entry_flow import FlowResultType, InvalidData
from homeassistant.helpers import intent

import custom_components.athena  # noqa: F401 - module-level import: HA's loader must find our integration
from custom_components.athena.const import CONF_PASS_CONVERSATION_ID, CONF_TIMEOUT, DOMAIN
from tests.support.gateway import GatewayProcess
from tests_ha.support import FakeLLMProcess, closed_port_url, setup_athena


async def _start_flow(hass: HomeAssistant) -> str:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": config_entries.SOURCE_USER})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    assert result["errors"] == {}
    return result["flow_id"]


@pytest.fixture
async def json_server() -> AsyncIterator[Callable[[int, object], str]]:
    """A real loopback HTTP server answering `/athena/info` with a chosen status and JSON body."""
    runners: list[web.AppRunner] = []

    async def start(status: int, body: object) -> str:
        async def info(request: web.Request) -> web.Response:
            return web.json_response(body, status=status)

        app = web.Application()
        app.router.add_get("/athena/info", info)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def _instance(hass: HomeAssistant, gateway: GatewayProcess) -> str:
    status, info = await hass.async_add_executor_job(gateway.request, "GET", "/athena/info")
    assert status == 200
    return str(info["instance_id"])


async def test_user_flow_creates_entry(hass: HomeAssistant, gateway: GatewayProcess) -> None:
    flow_id = await _start_flow(hass)
    # A trailing slash and upper-case host are the same gateway: one normalized URL.
    url_typed = gateway.url.replace("http://127.0.0.1", "HTTP://127.0.0.1") + "/"
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_URL: url_typed, CONF_TOKEN: f"  {gateway.token} "}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == {CONF_URL: gateway.url, CONF_TOKEN: gateway.token}
    entry = result["result"]
    assert entry.unique_id == await _instance(hass, gateway)  # the gateway's own id, not its address
    await hass.async_block_till_done()
    assert entry.state is config_entries.ConfigEntryState.LOADED
    assert hass.states.get("conversation.athena") is not None

    # The same gateway again: aborted before any request.
    flow_id = await _start_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_URL: gateway.url + "/", CONF_TOKEN: gateway.token}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_wrong_token_is_invalid_auth_then_fixed(hass: HomeAssistant, gateway: GatewayProcess) -> None:
    flow_id = await _start_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_URL: gateway.url, CONF_TOKEN: "not-the-token"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "invalid_auth"}
    # The form keeps the URL the user typed and accepts a corrected token.
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_URL: gateway.url, CONF_TOKEN: gateway.token}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_unreachable_is_cannot_connect(hass: HomeAssistant) -> None:
    flow_id = await _start_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_URL: closed_port_url(), CONF_TOKEN: "t"}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}
    assert not hass.config_entries.async_entries(DOMAIN)


async def test_404_is_not_athena(hass: HomeAssistant, llm: FakeLLMProcess) -> None:
    # The fake LLM is a real HTTP server without /athena/info: it answers 404.
    flow_id = await _start_flow(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, {CONF_URL: llm.url, CONF_TOKEN: "t"})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "not_athena"}


async def test_other_service_body_is_not_athena(hass: HomeAssistant, json_server) -> None:
    url = await json_server(200, {"service": "something-else", "version": "1"})
    flow_id = await _start_flow(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, {CONF_URL: url, CONF_TOKEN: "t"})
    assert result["errors"] == {"base": "not_athena"}

    url = await json_server(200, ["not", "an", "object"])
    flow_id = await _start_flow(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, {CONF_URL: url, CONF_TOKEN: "t"})
    assert result["errors"] == {"base": "not_athena"}


async def test_server_error_is_not_athena(hass: HomeAssistant, json_server) -> None:
    url = await json_server(500, {"oops": True})
    flow_id = await _start_flow(hass)
    result = await hass.config_entries.flow.async_configure(flow_id, {CONF_URL: url, CONF_TOKEN: "t"})
    assert result["errors"] == {"base": "not_athena"}


async def test_not_a_url(hass: HomeAssistant) -> None:
    flow_id = await _start_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, {CONF_URL: "gateway.local:8000", CONF_TOKEN: "t"}
    )
    assert result["errors"] == {CONF_URL: "invalid_url"}


async def test_options_flow(hass: HomeAssistant, gateway: GatewayProcess) -> None:
    entry = await setup_athena(hass, gateway.url, gateway.token)
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "init"
    defaults = {key.schema: key.default() for key in result["data_schema"].schema}
    assert defaults == {CONF_TIMEOUT: 35.0, CONF_PASS_CONVERSATION_ID: True}

    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {CONF_TIMEOUT: 5, CONF_PASS_CONVERSATION_ID: False}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options == {CONF_TIMEOUT: 5, CONF_PASS_CONVERSATION_ID: False}

    # Reopened, the form shows the saved values.
    result = await hass.config_entries.options.async_init(entry.entry_id)
    defaults = {key.schema: key.default() for key in result["data_schema"].schema}
    assert defaults == {CONF_TIMEOUT: 5, CONF_PASS_CONVERSATION_ID: False}
    # Out of range: refused by the form's schema, nothing saved.
    with pytest.raises(InvalidData):
        await hass.config_entries.options.async_configure(
            result["flow_id"], {CONF_TIMEOUT: 500, CONF_PASS_CONVERSATION_ID: True}
        )
    assert entry.options[CONF_TIMEOUT] == 5


async def test_reauth_after_the_gateway_refuses_the_token(
    hass: HomeAssistant, gateway: GatewayProcess, llm: FakeLLMProcess
) -> None:
    entry = await setup_athena(hass, gateway.url, "old-token")
    result = await conversation.async_converse(hass, "hello", None, Context(), agent_id="conversation.athena")
    assert result.response.error_code is intent.IntentResponseErrorCode.FAILED_TO_HANDLE
    await hass.async_block_till_done()

    (flow,) = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert flow["context"]["source"] == config_entries.SOURCE_REAUTH
    assert flow["step_id"] == "reauth_confirm"
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {CONF_TOKEN: "still-wrong"})
    assert result["errors"] == {"base": "invalid_auth"}
    result = await hass.config_entries.flow.async_configure(flow["flow_id"], {CONF_TOKEN: gateway.token})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    await hass.async_block_till_done()
    assert entry.data[CONF_TOKEN] == gateway.token

    result = await conversation.async_converse(hass, "hello", None, Context(), agent_id="conversation.athena")
    assert result.response.speech["plain"]["speech"] == "Reply to: hello"


async def test_reconfigure_moves_to_another_address(hass: HomeAssistant, gateway: GatewayProcess) -> None:
    entry = await setup_athena(hass, closed_port_url(), "token")
    result = await entry.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure"
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: closed_port_url(), CONF_TOKEN: gateway.token}
    )
    assert result["errors"] == {"base": "cannot_connect"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: gateway.url + "/", CONF_TOKEN: gateway.token}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert entry.data == {CONF_URL: gateway.url, CONF_TOKEN: gateway.token}
    assert entry.unique_id == await _instance(hass, gateway)  # an entry made before instance ids takes it now
    assert entry.state is config_entries.ConfigEntryState.LOADED


async def test_reconfigure_keeps_the_unique_id_and_refuses_another_gateway(
    hass: HomeAssistant, gateway: GatewayProcess, llm: FakeLLMProcess
) -> None:
    instance = await _instance(hass, gateway)
    entry = await setup_athena(hass, gateway.url, gateway.token, unique_id=instance)
    with GatewayProcess({"ATHENA_LLM_URL": llm.url + "/v1"}, python=gateway.python) as moved:
        # The same gateway at a new address (same data dir, so the same instance id): fine, id unchanged.
        result = await entry.start_reconfigure_flow(hass)
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_URL: moved.url, CONF_TOKEN: moved.token}
        )
        # ...a different gateway: refused, nothing changed.
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "wrong_gateway"
        assert entry.data == {CONF_URL: gateway.url, CONF_TOKEN: gateway.token}
        assert entry.unique_id == instance
    env = {"ATHENA_LLM_URL": llm.url + "/v1", "ATHENA_INSTANCE_ID": instance}
    with GatewayProcess(env, python=gateway.python) as same:
        result = await entry.start_reconfigure_flow(hass)
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_URL: same.url, CONF_TOKEN: same.token}
        )
        assert result["type"] is FlowResultType.ABORT and result["reason"] == "reconfigure_successful"
        assert entry.data[CONF_URL] == same.url and entry.unique_id == instance
