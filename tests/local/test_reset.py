"""Voice "start over": whole phrases only, per language; the engine starts a fresh session in one write."""

from typing import Any

import pytest

from athena.engine import Engine
from athena.llm import make_backend
from athena.local import LocalPath
from athena.local.reset import is_start_over
from athena.sessions.manager import SessionManager
from athena.stores import Store, create_store
from athena.turns import Turn


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


class CountingStore:
    """A real SQLite store that counts the calls made to it (a wrapper, not a stand-in)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if callable(attr) and name not in ("open", "close"):
            self.calls.append(name)
        return attr


@pytest.fixture
async def manager(tmp_path):
    store = CountingStore(create_store(f"sqlite:///{tmp_path / 'a.db'}"))
    mgr = SessionManager(store)  # type: ignore[arg-type]
    await mgr.start()
    yield mgr
    await mgr.stop()


async def test_start_over_is_one_store_write_and_forgets_the_history(manager, fake_llm):
    llm = make_backend("openai", fake_llm.url + "/v1", "fake-model")
    async with llm:
        engine = Engine(manager, llm)
        first = await engine.handle(Turn("hi", device_id="kitchen-satellite"))
        assert (await manager.describe("kitchen-satellite"))["turns"] == 1

        manager.store.calls.clear()
        reply = await engine.handle(Turn("Start over!", device_id="kitchen-satellite"))
        assert manager.store.calls == ["acquire"]  # the fresh session retires the old one: one write
        assert reply.path == "reset" and reply.speech == "Okay, let's start over."
        assert reply.session_id != first.session_id
        session = await manager.active("kitchen-satellite")
        assert session is not None and session.id == reply.session_id
        assert await manager.history(session) == []

        ordinary = await engine.handle(Turn("what time is it", device_id="kitchen-satellite"))
        assert ordinary.path == "llm" and ordinary.session_id == reply.session_id


def test_local_path_without_home_assistant_has_no_handlers():
    local = LocalPath.off("ATHENA_HA_URL and ATHENA_HA_TOKEN are not set")
    assert local.handlers == []
    status = local.status()
    assert status["enabled"] is False and status["start_over"] is True
    assert "ATHENA_HA_URL" in status["reason"]
