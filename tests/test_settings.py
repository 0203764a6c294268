"""Settings that cannot be wrong silently: each mistake stops the start with one line naming the setting, or
(an ATHENA_* variable that is no setting) warns naming the nearest known name."""

from __future__ import annotations

from pathlib import Path

import pytest

from athena.config import BadSetting, load_settings, unknown_variables
from tests.api.test_cli import athena


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A clean ATHENA_* environment for load_settings()."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("ATHENA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ATHENA_DATA_DIR", str(tmp_path))
    return monkeypatch


def bad(env: pytest.MonkeyPatch) -> str:
    with pytest.raises(BadSetting) as info:
        load_settings()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_missing_config_file_stops_the_start(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("ATHENA_CONFIG_FILE", str(tmp_path / "nonexistent.toml"))
    assert bad(env) == f"ATHENA_CONFIG_FILE: {tmp_path / 'nonexistent.toml'} does not exist"
    env.setenv("ATHENA_CONFIG_FILE", str(tmp_path))
    assert "is a directory" in bad(env)


def test_an_unknown_key_in_the_file_is_named_with_the_nearest(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "athena.toml"
    path.write_text('llm_model = "x"\nsesion_timeout = 60\n')
    env.setenv("ATHENA_CONFIG_FILE", str(path))
    assert bad(env) == f"{path}: unknown setting 'sesion_timeout' (did you mean session_timeout?)"
    path.write_text("ATHENA_SESSION_TIMEOUT = 60\n")
    assert "write session_timeout, without the ATHENA_ prefix" in bad(env)


def test_a_toml_syntax_error_names_the_file_and_position(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "athena.toml"
    path.write_text('llm_model = "x"\nsession_timeout = \n')
    env.setenv("ATHENA_CONFIG_FILE", str(path))
    message = bad(env)
    assert message.startswith(f"{path}: not valid TOML") and "line 2" in message


def test_a_bad_value_in_the_file_names_the_key_and_file(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "athena.toml"
    path.write_text("session_timeout = -3\n")
    env.setenv("ATHENA_CONFIG_FILE", str(path))
    assert bad(env).startswith(f"session_timeout in {path}: ")
    env.setenv("ATHENA_SESSION_TIMEOUT", "30")  # the environment wins, and is valid
    assert load_settings().session_timeout == 30


def test_a_good_file_is_read(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "athena.toml"
    path.write_text('session_timeout = 42\n[devices."kitchen display"]\ntimeout = 600\n')
    env.setenv("ATHENA_CONFIG_FILE", str(path))
    settings = load_settings()
    assert settings.session_timeout == 42 and settings.devices["kitchen display"].timeout == 600


def test_an_unknown_key_inside_devices_stops_the_start(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("ATHENA_DEVICES", '{"kitchen display": {"timeot": 600}}')
    assert bad(env) == (
        "ATHENA_DEVICES: device 'kitchen display' has no setting 'timeot' (did you mean timeout?); "
        "known: timeout, max_age"
    )
    path = tmp_path / "athena.toml"
    path.write_text("[devices.kitchen]\nmax_agee = 60\n")
    env.delenv("ATHENA_DEVICES")
    env.setenv("ATHENA_CONFIG_FILE", str(path))
    assert bad(env).startswith(f"devices in {path}: device 'kitchen' has no setting 'max_agee'")


def test_devices_that_are_not_json_name_the_variable_and_position(env: pytest.MonkeyPatch) -> None:
    env.setenv("ATHENA_DEVICES", "{bad json")
    message = bad(env)
    assert message.startswith("ATHENA_DEVICES: not valid JSON at line 1, column 2: ")
    assert "EnvSettingsSource" not in message


@pytest.mark.parametrize("variable", ["ATHENA_LLM_URL", "ATHENA_LLM_FALLBACK_URL"])
@pytest.mark.parametrize("value", ["not a url", "127.0.0.1:11434/v1", "ftp://host/v1", "http://"])
def test_an_llm_url_that_is_not_a_url_stops_the_start(
    env: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    env.setenv(variable, value)
    assert bad(env).startswith(f"{variable}: {value!r} is not an http:// or https:// URL")


def test_ha_url_must_be_a_url(env: pytest.MonkeyPatch) -> None:
    env.setenv("ATHENA_HA_URL", "homeassistant.local:8123")
    env.setenv("ATHENA_HA_TOKEN", "t")
    assert bad(env).startswith("ATHENA_HA_URL: ")


def test_unknown_variables_warn_with_the_nearest_name() -> None:
    environ = {
        "ATHENA_SESION_TIMEOUT": "5",
        "ATHENA_LLM_MODEL": "x",
        "ATHENA_CONFIG_FILE": "a.toml",
        "ATHENA_URL": "http://x",
        "ATHENA_TEST_REDIS_URL": "redis://",
        "ATHENA_BENCH_REDIS_URL": "redis://",
        "ATHENA_PYTHON": "python",
        "ATHENA_ZZZZZZZZZZZZZZZZ": "1",
        "PATH": "/bin",
    }
    assert unknown_variables(environ) == [
        "ATHENA_SESION_TIMEOUT is not an Athena setting and is ignored "
        "(did you mean ATHENA_SESSION_TIMEOUT?)",
        "ATHENA_ZZZZZZZZZZZZZZZZ is not an Athena setting and is ignored",
    ]


# -- the command line: one line, exit 2 ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "start"),
    [
        ({"ATHENA_CONFIG_FILE": "/nonexistent.toml"}, "athena: bad setting ATHENA_CONFIG_FILE: "),
        ({"ATHENA_DEVICES": '{"kitchen display": {"timeot": 600}}'}, "athena: bad setting ATHENA_DEVICES: "),
        ({"ATHENA_DEVICES": "{bad json"}, "athena: bad setting ATHENA_DEVICES: not valid JSON at line 1"),
        ({"ATHENA_LLM_URL": "not a url"}, "athena: bad setting ATHENA_LLM_URL: "),
    ],
)
async def test_serve_stops_with_one_line(tmp_path: Path, env: dict[str, str], start: str) -> None:
    code, _, err = await athena("serve", "--port", "0", env={"ATHENA_DATA_DIR": str(tmp_path), **env})
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(start), err


async def test_serve_stops_on_an_unknown_key_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "athena.toml"
    path.write_text("sesion_timeout = 60\n")
    code, _, err = await athena(
        "serve", "--port", "0", env={"ATHENA_DATA_DIR": str(tmp_path), "ATHENA_CONFIG_FILE": str(path)}
    )
    assert code == 2
    assert err.strip() == (
        f"athena: bad setting {path}: unknown setting 'sesion_timeout' (did you mean session_timeout?)"
    )


async def test_an_unknown_variable_is_a_warning_not_a_stop(tmp_path: Path) -> None:
    code, _, err = await athena(
        "sessions",
        "list",
        "--url",
        "http://127.0.0.1:9",
        "--token",
        "x",
        env={"ATHENA_DATA_DIR": str(tmp_path), "ATHENA_SESION_TIMEOUT": "60"},
    )
    lines = err.strip().splitlines()
    assert lines[0] == (
        "athena: warning: ATHENA_SESION_TIMEOUT is not an Athena setting and is ignored "
        "(did you mean ATHENA_SESSION_TIMEOUT?)"
    )
    assert code == 1 and lines[1].startswith("athena: cannot reach the gateway")  # it went on


@pytest.mark.parametrize("command", [["chat", "--device", "kitchen display"], ["sessions", "show", "a b"]])
async def test_a_bad_device_id_fails_before_anything_is_sent(tmp_path: Path, command: list[str]) -> None:
    code, out, err = await athena(
        *command,
        "--url",
        "http://127.0.0.1:9",
        "--token",
        "x",
        env={"ATHENA_DATA_DIR": str(tmp_path)},
        stdin="hello\n",
    )
    assert code == 2 and out == ""  # no banner, no turn
    assert "device id must be 1-128 characters of letters, digits and . _ : @ / -" in err
