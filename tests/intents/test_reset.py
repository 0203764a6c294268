"""Voice "start over": whole phrases only, per language, and it really clears the device's session."""

import pytest

from athena.config import Settings
from athena.engine.types import Turn
from athena.intents import LocalPath
from athena.intents.reset import StartOverHandler, is_start_over
from athena.sessions.manager import SessionManager
from athena.sessions.models import Message
from athena.stores import create_store


@pytest.mark.parametrize(
    "text",
    [
        "start over",
        "Start over.",
        "New conversation!",
        "forget that",
        "reset",
        "okay, start over please",
        "Let’s start over",
    ],
)
def test_english_phrases(text):
    assert is_start_over(text, "en-US") == "Okay, let's start over."


@pytest.mark.parametrize(
    "text",
    ["forget that I said the kitchen", "start over the music", "reset the thermostat", "turn on the lights"],
)
def test_longer_sentences_are_not_resets(text):
    assert is_start_over(text, "en") is None


def test_other_languages_and_english_fallback():
    assert is_start_over("Neues Gespräch", "de-DE") == "Okay, wir fangen von vorne an."
    assert is_start_over("start over", "de") == "Okay, let's start over."  # English works everywhere
    assert is_start_over("nieuw gesprek", "nl") == "Oké, we beginnen opnieuw."


@pytest.fixture
async def manager(tmp_path):
    settings = Settings(data_dir=tmp_path, store_url=f"sqlite:///{tmp_path / 'a.db'}")
    mgr = SessionManager(create_store(settings.store_url), settings)
    await mgr.start()
    yield mgr
    await mgr.stop()


async def test_start_over_clears_the_session(manager):
    session = await manager.resolve("kitchen-satellite")
    await manager.append_turn(session, Message("user", "hi", 1.0), Message("assistant", "hello", 1.0))
    assert (await manager.describe("kitchen-satellite"))["turns"] == 1

    handler = StartOverHandler(manager)
    answer = await handler.handle(Turn(text="Start over!", device="kitchen-satellite"), session, [])
    assert answer is not None and answer.reset and answer.path == "reset"
    assert answer.speech == "Okay, let's start over."
    assert await manager.active("kitchen-satellite") is None

    ordinary = await handler.handle(Turn(text="what time is it", device="kitchen-satellite"), session, [])
    assert ordinary is None


async def test_local_path_without_home_assistant_has_only_start_over(manager):
    local = await LocalPath.start(Settings(), sessions=manager)
    try:
        assert [type(h).__name__ for h in local.handlers] == ["StartOverHandler"]
        status = local.status()
        assert status["enabled"] is False and status["start_over"] is True
        assert "ATHENA_HA_URL" in status["reason"]
    finally:
        await local.close()
