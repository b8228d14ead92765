"""The text catalog: both languages complete and consistent, formatting rules."""

from __future__ import annotations

import re
from typing import get_args

import pytest

from bot.errors import LLMErrorKind
from bot.texts import CATALOG, EN, KO, Texts, placeholders

HANGUL = re.compile("[\uac00-\ud7a3]")
DISCORD_DESCRIPTION_LIMIT = 100
# Keys the core, console and start-up code ask for; each must exist in every language.
REQUIRED = {
    "help",
    "reset_done",
    "system_show",
    "system_default",
    "system_set",
    "system_cleared",
    "system_denied",
    "system_too_long",
    "empty_message",
    "unknown_command",
    "message_shortened",
    "error_internal",
    "error_delivery",
    "console_question",
    "console_answer",
    "console_answer_recovered",
    "console_welcome",
    "no_platforms",
    "error_storage",
    "error_storage_read",
    "error_storage_answer",
    "console_storage_failed",
    "console_not_asked",
    "cut_by_restart",
    *(f"error_{kind}" for kind in get_args(LLMErrorKind)),
}


def test_both_languages_have_the_same_keys() -> None:
    assert set(EN) == set(KO)
    assert set(CATALOG) == {"en", "ko"}


@pytest.mark.parametrize("key", sorted(EN))
def test_both_languages_use_the_same_placeholders(key: str) -> None:
    assert placeholders(EN[key]) == placeholders(KO[key])


def test_every_needed_text_exists() -> None:
    assert REQUIRED - set(EN) == set()


@pytest.mark.parametrize(
    ("key", "names"),
    [
        ("help", {"prefix"}),
        ("system_show", {"prompt"}),
        ("system_default", {"prompt", "prefix"}),
        ("system_too_long", {"limit"}),
        ("unknown_command", {"command", "prefix"}),
        ("message_shortened", {"removed"}),
        ("reset_done", set()),
    ],
)
def test_placeholders_the_callers_rely_on(key: str, names: set[str]) -> None:
    assert placeholders(EN[key]) == names


@pytest.mark.parametrize("language", sorted(CATALOG))
def test_every_text_formats_cleanly(language: str) -> None:
    texts = Texts(language)
    for key, template in CATALOG[language].items():
        values = {name: f"<{name}>" for name in placeholders(template)}
        text = texts.get(key, **values)
        assert text.strip(), key
        assert "{" not in text and "}" not in text, key


def test_korean_texts_are_korean() -> None:
    for key, text in KO.items():
        assert HANGUL.search(text), key
        assert text != EN[key], key


@pytest.mark.parametrize("language", sorted(CATALOG))
def test_slash_command_descriptions_fit_discord(language: str) -> None:
    for key, text in CATALOG[language].items():
        if key.startswith("slash_"):
            assert 1 <= len(text) <= DISCORD_DESCRIPTION_LIMIT, key


def test_prefix_is_filled_in() -> None:
    assert "`!reset`" in Texts("en").get("help")
    assert "`?reset`" in Texts("ko", prefix="?").get("help")
    assert "`/reset`" in Texts("en").get("help", prefix="/")
    assert "`!reset`" in Texts("en").get("error_context_too_long")


def test_unknown_command_text() -> None:
    text = Texts("en").get("unknown_command", command="frob", prefix="!")
    assert "`!frob`" in text and "`!help`" in text


def test_missing_placeholder_stays_a_template() -> None:
    note = Texts("en").get("message_shortened")
    assert "{removed}" in note
    assert "123 tokens" in note.format(removed=123)


def test_values_are_not_formatted_again() -> None:
    prompt = "Reply in {style} with {{braces}} and {0}"
    assert prompt in Texts("ko").get("system_show", prompt=prompt)


def test_missing_key_raises_key_error() -> None:
    with pytest.raises(KeyError):
        Texts("en").get("no_such_text")


def test_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="fr"):
        Texts("fr")


@pytest.mark.parametrize("language", sorted(CATALOG))
def test_no_platforms_says_which_variables_to_set(language: str) -> None:
    text = Texts(language).get("no_platforms")
    for needed in (
        "DISCORD_BOT_TOKEN",
        "SLACK_BOT_TOKEN",
        "SLACK_APP_TOKEN",
        "python -m bot console",
    ):
        assert needed in text


def test_console_prompts() -> None:
    assert Texts("en").get("console_question") == "question: "
    assert Texts("en").get("console_answer") == "answer: "
    assert Texts("ko").get("console_question").endswith(": ")
