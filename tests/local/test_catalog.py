"""Language choice and lazy per-language loading of HA's intent data."""

import pytest

from athena.local.catalog import IntentCatalog, resolve_language


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("en", "en"),
        ("en-US", "en"),
        ("EN_gb", "en"),
        ("pt_BR", "pt-BR"),
        ("pt-PT", "pt"),
        ("de-CH", "de-CH"),
        ("de-AT", "de"),
        ("zh-cn", "zh-CN"),
        ("xx", None),
        ("", None),
        (None, None),
    ],
)
def test_resolve_language(given, expected):
    assert resolve_language(given) == expected


def test_languages_load_lazily_and_are_cached():
    catalog = IntentCatalog()
    assert catalog.cached("nl") is None
    li = catalog.warm("nl-NL")
    assert li is not None and li.language == "nl" and li.warmed
    assert catalog.cached("nl-BE") is li
    assert catalog.languages == ["nl"]
    assert "HassTurnOn" in li.responses
    assert catalog.get("klingon") is None
