"""Config flow: a gateway URL and token, checked against `GET /athena/info` before anything is saved.

The entry's unique id is the gateway's own `instance_id` (from /athena/info), so a gateway that moves to
another address is still the same entry, and reconfiguring cannot silently point it at a different gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
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

_TOKEN_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))


def _user_schema(defaults: Mapping[str, Any]) -> vol.Schema:
    return vol.Schema(
        {
            vol.Required(CONF_URL, default=defaults.get(CONF_URL, "http://127.0.0.1:8000")): TextSelector(
                TextSelectorConfig(type=TextSelectorType.URL)
            ),
            vol.Required(CONF_TOKEN): _TOKEN_SELECTOR,
        }
    )


def _title(url: str) -> str:
    return f"Athena ({url.split('://', 1)[1]})"


class AthenaConfigFlow(ConfigFlow, domain=DOMAIN):
    VERSION = 1

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        errors: dict[str, str] = {}
        if user_input is not None:
            data, instance, errors = await self._check_url_and_token(user_input)
            if not errors:
                await self.async_set_unique_id(instance)
                self._abort_if_unique_id_configured()
                return self.async_create_entry(title=_title(data[CONF_URL]), data=data)
        return self.async_show_form(step_id="user", data_schema=_user_schema(user_input or {}), errors=errors)

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        """The gateway refused the token during a turn (the agent started this flow)."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            token = user_input[CONF_TOKEN].strip()
            error, instance = await self._check_gateway(entry.data[CONF_URL], token)
            if error is None:
                await self._same_gateway(entry, instance)
                return self.async_update_reload_and_abort(
                    entry, unique_id=instance, data_updates={CONF_TOKEN: token}
                )
            errors["base"] = error
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=vol.Schema({vol.Required(CONF_TOKEN): _TOKEN_SELECTOR}),
            description_placeholders={"url": entry.data[CONF_URL]},
            errors=errors,
        )

    async def async_step_reconfigure(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """The gateway moved (new address) or got a new token."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            data, instance, errors = await self._check_url_and_token(user_input, entry)
            if not errors:
                await self._same_gateway(entry, instance)
                return self.async_update_reload_and_abort(
                    entry, unique_id=instance, title=_title(data[CONF_URL]), data_updates=data
                )
        return self.async_show_form(
            step_id="reconfigure", data_schema=_user_schema(user_input or entry.data), errors=errors
        )

    async def _check_url_and_token(
        self, user_input: dict[str, Any], entry: ConfigEntry | None = None
    ) -> tuple[dict[str, str], str, dict[str, str]]:
        """(The entry data to save, the gateway's instance id, the form's errors) for a typed URL and token.

        A URL another entry already uses aborts before any request."""
        try:
            url = normalize_url(user_input[CONF_URL])
        except ValueError:
            return {}, "", {CONF_URL: "invalid_url"}
        if entry is None or url != entry.data[CONF_URL]:
            self._async_abort_entries_match({CONF_URL: url})
        token = user_input[CONF_TOKEN].strip()
        error, instance = await self._check_gateway(url, token)
        if error:
            return {}, "", {"base": error}
        return {CONF_URL: url, CONF_TOKEN: token}, instance, {}

    async def _same_gateway(self, entry: ConfigEntry, instance: str) -> None:
        """Abort when the answering gateway is another one than the entry's. Entries made before gateways
        had an instance id carry their URL as unique id: they take the instance id now."""
        await self.async_set_unique_id(instance)
        if entry.unique_id != entry.data[CONF_URL]:
            self._abort_if_unique_id_mismatch(reason="wrong_gateway")

    async def _check_gateway(self, url: str, token: str) -> tuple[str | None, str]:
        """(The form's error key or None, the gateway's instance id) for this URL and token."""
        try:
            info = await AthenaClient(async_get_clientsession(self.hass), url, token).info()
        except InvalidAuth:
            return "invalid_auth", ""
        except NotAthena:
            return "not_athena", ""
        except CannotConnect:
            return "cannot_connect", ""
        except GatewayError as err:
            LOGGER.warning("Athena at %s answered /athena/info with %s", url, err)
            return "not_athena", ""
        # A gateway older than instance ids: its URL stands in, as it did before.
        return None, str(info.get("instance_id") or url)

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> OptionsFlow:
        return AthenaOptionsFlow()


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
