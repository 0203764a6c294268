"""Config flow: a gateway URL and token, checked against `GET /athena/info` before anything is saved."""

from __future__ import annotations

from typing import Any

import voluptuous as vol
from homeassistant.config_entries import ConfigEntry, ConfigFlow, ConfigFlowResult, OptionsFlow
from homeassistant.const import CONF_TOKEN, CONF_URL
from homeassistant.core import callback
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import (
    BooleanSelector,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)

from .api import AthenaClient, CannotConnect, GatewayError, InvalidAuth, NotAthena, normalize_url
from .const import (
    CONF_PASS_CONVERSATION_ID,
    CONF_TIMEOUT,
    DEFAULT_PASS_CONVERSATION_ID,
    DEFAULT_TIMEOUT,
    DOMAIN,
    LOGGER,
    MAX_TIMEOUT,
    MIN_TIMEOUT,
)


def _user_schema(defaults: dict[str, Any]) -> vol.Schema:
    return vol.Schema(
        {
            vol.Required(CONF_URL, default=defaults.get(CONF_URL, "http://127.0.0.1:8000")): TextSelector(
                TextSelectorConfig(type=TextSelectorType.URL)
            ),
            vol.Required(CONF_TOKEN): TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD)),
        }
    )


class AthenaConfigFlow(ConfigFlow, domain=DOMAIN):
    VERSION = 1

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                url = normalize_url(user_input[CONF_URL])
            except ValueError:
                errors[CONF_URL] = "invalid_url"
            else:
                await self.async_set_unique_id(url)
                self._abort_if_unique_id_configured()
                token = user_input[CONF_TOKEN].strip()
                error = await _check_gateway(self, url, token)
                if error is None:
                    return self.async_create_entry(
                        title=f"Athena ({url.split('://', 1)[1]})",
                        data={CONF_URL: url, CONF_TOKEN: token},
                    )
                errors["base"] = error
        return self.async_show_form(step_id="user", data_schema=_user_schema(user_input or {}), errors=errors)

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> OptionsFlow:
        return AthenaOptionsFlow()


async def _check_gateway(flow: ConfigFlow, url: str, token: str) -> str | None:
    """The form's error key for this URL and token, or None when the gateway accepts them."""
    client = AthenaClient(async_get_clientsession(flow.hass), url, token)
    try:
        await client.info()
    except InvalidAuth:
        return "invalid_auth"
    except NotAthena:
        return "not_athena"
    except CannotConnect:
        return "cannot_connect"
    except GatewayError as err:
        LOGGER.warning("Athena at %s answered /athena/info with %s", url, err)
        return "not_athena"
    return None


class AthenaOptionsFlow(OptionsFlow):
    """Options apply from the next turn on: the agent reads them per turn."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        if user_input is not None:
            return self.async_create_entry(data=user_input)
        options = self.config_entry.options
        schema = vol.Schema(
            {
                vol.Required(
                    CONF_TIMEOUT, default=options.get(CONF_TIMEOUT, DEFAULT_TIMEOUT)
                ): NumberSelector(
                    NumberSelectorConfig(
                        min=MIN_TIMEOUT,
                        max=MAX_TIMEOUT,
                        step=1,
                        unit_of_measurement="s",
                        mode=NumberSelectorMode.BOX,
                    )
                ),
                vol.Required(
                    CONF_PASS_CONVERSATION_ID,
                    default=options.get(CONF_PASS_CONVERSATION_ID, DEFAULT_PASS_CONVERSATION_ID),
                ): BooleanSelector(),
            }
        )
        return self.async_show_form(step_id="init", data_schema=schema)
