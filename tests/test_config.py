"""Loading, interpolating, checking and redacting the configuration."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from bot.config import (
    NO_KEY_PLACEHOLDER,
    SECRET_SET,
    Config,
    config_from_dict,
    expand,
    format_config,
    load_config,
    redact_url,
    redacted,
)
from bot.errors import ConfigError, StartupError
from bot.redact import redact_text
from storage import check_url

SHIPPED = Path(__file__).resolve().parents[1] / "config.yaml"
KEY_ENV = {"OPENAI_API_KEY": "sk-test-key"}

# Distinctive values, so a leak is easy to spot in any output.
SECRETS = {
    "OPENAI_API_KEY": "sk-LEAK-openai-0001",
    "DISCORD_BOT_TOKEN": "LEAK-discord-token-0002",
    "SLACK_BOT_TOKEN": "xoxb-LEAK-slack-bot-0003",
    "SLACK_APP_TOKEN": "xapp-LEAK-slack-app-0004",
    "SLACK_SIGNING_SECRET": "LEAK-signing-secret-0005",
}
DB_PASSWORD = "LEAK-db-password-0006"
ALL_ENV = {
    **SECRETS,
    "OPENAI_BASE_URL": "http://127.0.0.1:11434/v1",
    "OPENAI_MODEL": "llama3.2",
    "DATABASE_URL": f"postgresql://bot:{DB_PASSWORD}@db.internal:5432/bot",
    "BOT_LANGUAGE": "ko",
    "LOG_LEVEL": "debug",
}


def build(data: dict[str, Any], env: dict[str, str] | None = None) -> Config:
    return config_from_dict(data, KEY_ENV if env is None else env)


def error_of(data: dict[str, Any], env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        build(data, env)
    return info.value


# -- interpolation --------------------------------------------------------------


def test_reference_to_a_set_variable_is_replaced() -> None:
    cfg = build({"openai": {"model": "${MODEL}-x"}}, {**KEY_ENV, "MODEL": "gpt-4o"})
    assert cfg.openai.model == "gpt-4o-x"


def test_default_is_used_when_the_variable_is_unset_or_empty() -> None:
    data = {"openai": {"model": "${MODEL:-fallback}"}}
    assert build(data).openai.model == "fallback"
    assert build(data, {**KEY_ENV, "MODEL": ""}).openai.model == "fallback"
    assert build(data, {**KEY_ENV, "MODEL": "set"}).openai.model == "set"


def test_unset_variable_without_default_names_key_path_and_variable() -> None:
    err = error_of({"discord": {"token": "${MY_DISCORD_TOKEN}"}})
    assert err.path == "discord.token"
    assert "MY_DISCORD_TOKEN" in err.problem
    assert str(err).startswith("config: discord.token: ")


def test_set_but_empty_variable_without_default_is_empty() -> None:
    cfg = build({"discord": {"token": "${TOKEN}"}}, {**KEY_ENV, "TOKEN": ""})
    assert cfg.discord.token == ""
    assert not cfg.discord.enabled


def test_double_dollar_escapes_a_literal_reference() -> None:
    cfg = build({"openai": {"system_prompt": "Write $${HOME} and $5, not ${X:-y}."}})
    assert cfg.openai.system_prompt == "Write ${HOME} and $5, not y."


def test_substituted_values_are_not_expanded_again() -> None:
    env = {**KEY_ENV, "PROMPT": "literal ${OTHER} stays"}
    assert build({"openai": {"system_prompt": "${PROMPT}"}}, env).openai.system_prompt == (
        "literal ${OTHER} stays"
    )


@pytest.mark.parametrize("text", ["${1BAD}", "${}", "${A B}", "${A:default}"])
def test_malformed_reference_is_an_error(text: str) -> None:
    err = error_of({"openai": {"model": text}})
    assert err.path == "openai.model"
    assert "reference" in err.problem


def test_unclosed_reference_is_an_error() -> None:
    err = error_of({"openai": {"model": "${MODEL"}})
    assert err.path == "openai.model"
    assert "unclosed" in err.problem


def test_references_in_lists_name_the_item() -> None:
    env = {**KEY_ENV, "ROLE": "42"}
    assert build({"discord": {"admin_roles": ["${ROLE}", "7"]}}, env).discord.admin_roles == (
        "42",
        "7",
    )
    err = error_of({"discord": {"admin_roles": ["7", "${NOPE}"]}})
    assert err.path == "discord.admin_roles[1]"


def test_keys_are_not_interpolated() -> None:
    err = error_of({"openai": {"${KEY}": "x"}}, {**KEY_ENV, "KEY": "model"})
    assert err.path == "openai.${KEY}"
    assert "unknown key" in err.problem


@given(st.text(alphabet=st.sampled_from("ab${}:-_ \n"), max_size=30))
def test_escaping_every_reference_round_trips(text: str) -> None:
    assert expand(text.replace("${", "$${"), "k", {}) == text


# -- validation -----------------------------------------------------------------


def test_temperature_error_names_path_range_and_value() -> None:
    err = error_of({"openai": {"temperature": "hot"}})
    assert str(err) == "config: openai.temperature: must be a number between 0 and 2, got 'hot'"
    assert isinstance(err, StartupError)  # main() turns it into exit status 2


def nested(path: str, value: Any) -> dict[str, Any]:
    """``nested("a.b", 1) == {"a": {"b": 1}}``."""
    head, _, rest = path.partition(".")
    return {head: nested(rest, value) if rest else value}


@pytest.mark.parametrize(
    ("path", "value", "words"),
    [
        ("openai.temperature", 2.5, "between 0 and 2"),
        ("openai.temperature", True, "a number"),
        ("openai.temperature", ".nan", "a number"),
        ("openai.max_output_tokens", 0, "greater than 0"),
        ("openai.max_output_tokens", 20000, "smaller than openai.context_tokens"),
        ("openai.context_tokens", "lots", "whole number"),
        ("openai.context_tokens", 1.5, "whole number"),
        ("openai.first_token_timeout_s", 100, "request_timeout_s"),
        ("openai.request_timeout_s", -1, "greater than 0"),
        ("openai.max_retries", -1, "between 0 and 10"),
        ("openai.model", "", "empty"),
        ("openai.model", ["a"], "text"),
        ("openai.base_url", "localhost:11434/v1", "http://"),
        ("slack.http_port", 0, "between 1 and 65535"),
        ("slack.http_port", "65536", "between 1 and 65535"),
        ("slack.mode", "sockets", "did you mean socket"),
        ("language", "fr", "en, ko"),
        ("commands.system_prompt_policy", "everyone", "anyone, admins, nobody"),
        ("commands.reset_policy", "nobody", "anyone, admins"),
        ("commands.prefix", "hey bot", "spaces"),
        ("discord.streaming", "maybe", "true or false"),
        ("discord.allowed_guilds", {"a": 1}, "a list"),
        ("logging.level", "LOUD", "DEBUG"),
        ("storage.url", "data/bot.db", "sqlite:///"),
        ("openai", "gpt-4o", "section"),
        ("storage.retention_days", -1, "between 0 and 36500"),
        ("storage.retention_days", "forever", "a number"),
        ("limits.memory_cache_mb", "lots", "whole number"),
        ("limits.memory_cache_mb", -1, "between 0 and 65536"),
        ("limits.max_messages_per_answer", 0, "between 1 and 1000"),
        ("storage.pool_size", 0, "between 1 and 1000"),
        ("storage.pool_size", "many", "whole number"),
    ],
)
def test_invalid_values_name_their_key_path(path: str, value: Any, words: str) -> None:
    err = error_of(nested(path, value))
    assert err.path == path
    assert words in err.problem


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(["openai"], KEY_ENV)  # type: ignore[arg-type]
    assert info.value.path == "config"
    # The file as a whole is named once: "config: the top level...", not "config: config:".
    assert str(info.value).startswith("config: the top level must be key: value lines")


def test_minimal_config_gets_every_default() -> None:
    cfg = config_from_dict(None, KEY_ENV)
    assert cfg.openai.api_key == "sk-test-key"
    assert cfg.openai.model == "gpt-4o-mini"
    assert cfg.openai.base_url is None
    assert cfg.openai.request_timeout_s == 90
    assert cfg.openai.first_token_timeout_s == 30
    assert cfg.openai.max_retries == 3
    assert cfg.storage.url == "sqlite:///data/bot.db"
    assert cfg.commands.prefix == "!"
    assert cfg.console.session == "default"
    assert cfg.console.user_name is None
    assert not cfg.discord.enabled and not cfg.slack.enabled
    assert cfg.language == "en" and cfg.logging.level == "INFO"


def test_config_is_frozen() -> None:
    cfg = build({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.openai.model = "other"  # type: ignore[misc]


# -- unknown keys -----------------------------------------------------------------


def test_typo_gets_a_did_you_mean() -> None:
    err = error_of({"openai": {"temprature": 0.2}})
    assert err.path == "openai.temprature"
    assert "unknown key" in err.problem
    assert "did you mean openai.temperature?" in err.problem


def test_key_in_the_wrong_section_points_to_the_right_one() -> None:
    err = error_of({"temperature": 0.2})
    assert err.path == "temperature"
    assert "openai.temperature" in err.problem


def test_misspelt_section_is_suggested() -> None:
    assert "did you mean discord?" in error_of({"discrod": {}}).problem


def test_every_unknown_key_is_named() -> None:
    err = error_of({"slack": {"botToken": "x", "colour": "red", "mode": "http"}})
    assert err.path == "slack.botToken"
    assert "slack.colour" in err.problem


# -- environment strings are converted ----------------------------------------------


def test_environment_strings_are_converted_to_the_key_types() -> None:
    env = {
        **KEY_ENV,
        "TEMP": "0.5",
        "STREAM": "false",
        "BOTS": "TRUE",
        "PORT": "8080",
        "RETRIES": "0",
        "GUILDS": "111, 222,,",
        "LANG_": "KO",
    }
    data = {
        "language": "${LANG_}",
        "openai": {"temperature": "${TEMP}", "max_retries": "${RETRIES}"},
        "discord": {
            "streaming": "${STREAM}",
            "allow_bots": "${BOTS}",
            "allowed_guilds": "${GUILDS}",
        },
        "slack": {"http_port": "${PORT}", "allow_bots": "1", "streaming": "off"},
    }
    cfg = build(data, env)
    assert cfg.openai.temperature == 0.5
    assert cfg.openai.max_retries == 0
    assert cfg.discord.streaming is False
    assert cfg.discord.allow_bots is True
    assert cfg.discord.allowed_guilds == ("111", "222")
    assert cfg.slack.http_port == 8080
    assert cfg.slack.allow_bots is True and cfg.slack.streaming is False
    assert cfg.language == "ko"


def test_empty_value_means_the_default() -> None:
    data = {
        "openai": {"temperature": "${T:-}", "max_output_tokens": None, "base_url": ""},
        "discord": {"streaming": "", "allowed_roles": ""},
        "console": {"user_name": "  "},
    }
    cfg = build(data)
    assert cfg.openai.temperature == Config().openai.temperature
    assert cfg.openai.max_output_tokens == Config().openai.max_output_tokens
    assert cfg.openai.base_url is None
    assert cfg.discord.streaming is True
    assert cfg.discord.allowed_roles == ()
    assert cfg.console.user_name is None


def test_numeric_ids_in_yaml_lists_become_text() -> None:
    cfg = build(yaml.safe_load("discord:\n  allowed_guilds: [123456789012345678, '42']\n"))
    assert cfg.discord.allowed_guilds == ("123456789012345678", "42")


def test_secrets_are_stripped_of_surrounding_whitespace() -> None:
    cfg = build({}, {"OPENAI_API_KEY": "sk-abc\n", "DISCORD_BOT_TOKEN": " tok "})
    assert cfg.openai.api_key == "sk-abc"
    assert cfg.discord.token == "tok"


# -- the API key ------------------------------------------------------------------


def test_missing_api_key_without_base_url_is_an_error() -> None:
    err = error_of({}, {})
    assert err.path == "openai.api_key"
    assert "OPENAI_API_KEY" in err.problem


def test_local_server_without_key_gets_a_placeholder() -> None:
    cfg = build({}, {"OPENAI_BASE_URL": "http://127.0.0.1:8080/v1"})
    assert cfg.openai.api_key == NO_KEY_PLACEHOLDER
    assert cfg.openai.base_url == "http://127.0.0.1:8080/v1"


def test_api_key_can_be_optional_for_a_caller_that_brings_its_model() -> None:
    cfg = config_from_dict({}, {}, require_api_key=False)
    assert cfg.openai.api_key == NO_KEY_PLACEHOLDER


# -- Slack tokens belong together ---------------------------------------------------


@pytest.mark.parametrize(
    ("env", "path"),
    [
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, "slack.app_token"),
        ({"SLACK_APP_TOKEN": "xapp-1"}, "slack.bot_token"),
        ({"SLACK_BOT_TOKEN": "xapp-1", "SLACK_APP_TOKEN": "xoxb-1"}, "slack.bot_token"),
    ],
)
def test_incomplete_slack_setup_says_what_is_missing(env: dict[str, str], path: str) -> None:
    err = error_of({}, {**KEY_ENV, **env})
    assert err.path == path
    assert "xoxb-1" not in str(err) and "xapp-1" not in str(err)


@pytest.mark.parametrize(
    ("env", "path", "kind"),
    [
        ({"SLACK_BOT_TOKEN": "xoxp-1", "SLACK_APP_TOKEN": "xapp-1"}, "slack.bot_token", "user"),
        ({"SLACK_BOT_TOKEN": "1234", "SLACK_APP_TOKEN": "xapp-1"}, "slack.bot_token", "not a"),
        ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xoxb-2"}, "slack.app_token", "bot"),
        ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xoxp-2"}, "slack.app_token", "user"),
    ],
)
def test_a_slack_token_of_the_wrong_kind_is_named(
    env: dict[str, str], path: str, kind: str
) -> None:
    err = error_of({}, {**KEY_ENV, **env})
    assert err.path == path and kind in err.problem
    assert not any(secret in str(err) for secret in ("xoxp-1", "1234", "xoxb-2", "xoxp-2"))


def test_a_rotating_bot_token_is_a_bot_token() -> None:
    env = {**KEY_ENV, "SLACK_BOT_TOKEN": "xoxe.xoxb-1", "SLACK_APP_TOKEN": "xapp-1"}
    assert build({}, env).slack.enabled


def test_slack_http_mode_needs_the_signing_secret() -> None:
    env = {**KEY_ENV, "SLACK_BOT_TOKEN": "xoxb-1"}
    assert error_of({"slack": {"mode": "http"}}, env).path == "slack.signing_secret"
    cfg = build({"slack": {"mode": "HTTP"}}, {**env, "SLACK_SIGNING_SECRET": "s"})
    assert cfg.slack.enabled and cfg.slack.mode == "http" and not cfg.slack.app_token


# -- files --------------------------------------------------------------------------


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml", KEY_ENV)
    assert info.value.path == "config"
    assert "file not found" in info.value.problem and "nope.yaml" in info.value.problem


def test_yaml_syntax_error_reports_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("openai:\n  model: gpt-4o\n  temperature: [0.5\nlogging:\n  level: INFO\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, KEY_ENV)
    assert info.value.path == "config"
    assert "YAML syntax error at line 4" in info.value.problem


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("openai:\n  model: a\nlogging:\n  level: INFO\nopenai:\n  model: b\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, KEY_ENV)
    assert "line 5" in info.value.problem
    assert "duplicate key 'openai' (first at line 1)" in info.value.problem


def test_yaml_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text(
        "slack: &base {streaming: false, allow_bots: true}\ndiscord: {<<: *base, streaming: true}\n"
    )
    cfg = load_config(path, KEY_ENV)
    assert cfg.discord.streaming is True and cfg.discord.allow_bots is True


def test_empty_file_is_a_minimal_config(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing here\n")
    assert load_config(path, KEY_ENV) == config_from_dict({}, KEY_ENV)


# -- the shipped config.yaml ----------------------------------------------------------


def test_shipped_config_works_with_only_the_api_key() -> None:
    cfg = load_config(SHIPPED, {"OPENAI_API_KEY": "sk-only"})
    assert cfg.openai.api_key == "sk-only"
    assert cfg.openai.base_url is None
    assert cfg.openai.model == "gpt-4o-mini"
    assert cfg.storage.url == "sqlite:///data/bot.db"
    assert not cfg.discord.enabled and not cfg.slack.enabled
    assert cfg.language == "en"


def test_shipped_config_matches_the_built_in_defaults() -> None:
    env = {"OPENAI_API_KEY": "sk-only"}
    assert load_config(SHIPPED, env) == config_from_dict({}, env)
    assert load_config(SHIPPED, ALL_ENV) == config_from_dict({}, ALL_ENV)


def test_shipped_config_takes_every_variable() -> None:
    cfg = load_config(SHIPPED, ALL_ENV)
    assert cfg.openai.api_key == SECRETS["OPENAI_API_KEY"]
    assert cfg.openai.base_url == "http://127.0.0.1:11434/v1"
    assert cfg.openai.model == "llama3.2"
    assert cfg.storage.url == ALL_ENV["DATABASE_URL"]
    assert cfg.discord.token == SECRETS["DISCORD_BOT_TOKEN"]
    assert cfg.slack.bot_token == SECRETS["SLACK_BOT_TOKEN"]
    assert cfg.slack.app_token == SECRETS["SLACK_APP_TOKEN"]
    assert cfg.slack.signing_secret == SECRETS["SLACK_SIGNING_SECRET"]
    assert cfg.discord.enabled and cfg.slack.enabled
    assert cfg.language == "ko"
    assert cfg.logging.level == "DEBUG"


# -- redaction ------------------------------------------------------------------------


def leaks(text: str) -> list[str]:
    return [s for s in [*SECRETS.values(), DB_PASSWORD] if s in text]


def test_no_secret_appears_in_format_config_or_repr() -> None:
    cfg = load_config(SHIPPED, ALL_ENV)
    shown = format_config(cfg)
    assert leaks(shown) == []
    assert leaks(repr(cfg)) == []
    assert leaks(str(cfg)) == []
    assert leaks(repr(cfg.storage)) == [] and "***@db.internal:5432" in repr(cfg.storage)


def test_redacted_marks_set_and_unset_secrets() -> None:
    data = redacted(load_config(SHIPPED, ALL_ENV))
    assert data["openai"]["api_key"] == SECRET_SET
    assert data["discord"]["token"] == SECRET_SET
    assert data["slack"]["signing_secret"] == SECRET_SET
    assert data["storage"]["url"] == "postgresql://***@db.internal:5432/bot"
    assert data["openai"]["model"] == "llama3.2"  # everything else is shown as is
    empty = redacted(build({}))
    assert empty["discord"]["token"] == "" and empty["slack"]["bot_token"] == ""


def test_format_config_is_yaml_of_the_redacted_config() -> None:
    cfg = load_config(SHIPPED, ALL_ENV)
    assert yaml.safe_load(format_config(cfg)) == redacted(cfg)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("sqlite:///data/bot.db", "sqlite:///data/bot.db"),
        ("memory://", "memory://"),
        ("postgres://u@h/db", "postgres://***@h/db"),  # a lone user part may be a token
        ("postgres://u:p%40ss@h:1/db?sslmode=require", "postgres://***@h:1/db?sslmode=require"),
        ("sqlite:///x.db?auth_token=abc&mode=ro", "sqlite:///x.db?auth_token=***&mode=ro"),
        ("https://user:PASSWORD@host/v1?api-key=KEY", "https://***@host/v1?api-key=***"),
        ("https://h?key=1&v=2#access_token=T", "https://h?key=***&v=2#access_token=***"),
        (
            "https://h/f?X-Amz-Signature=s&sig=t&code=c",
            "https://h/f?X-Amz-Signature=***&sig=***&code=***",
        ),
        (
            "wss://wss.slack.com/link/?ticket=t1&app_id=A1",
            "wss://wss.slack.com/link/?ticket=***&app_id=A1",
        ),
        ("bot:pw@db/x", "***@db/x"),  # no scheme, still a password
        ("postgresql://u:pa/ss@h:1/db", "postgresql://***@h:1/db"),  # "/" not encoded
        ("postgresql://u:pa?ss@h/db", "postgresql://***@h/db"),
        ("https://u:pa#ss@h/v1?key=K", "https://***@h/v1?key=***"),
        ("postgresql//u:pass@h/db", "***@h/db"),  # mistyped schemes
        ("http:/u:pass@h/v1", "***@h/v1"),
        ("http://h:9/api/users/@me", "http://h:9/api/users/@me"),  # a path segment
        ("https://h/x?email=a@b", "https://h/x?email=a@b"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_every_url_key_is_redacted_in_check_output_and_errors() -> None:
    url = "https://LEAKUSER:LEAKPW@proxy.example/v1?api-key=LEAKKEY&region=eu"
    keyed = "https://proxy.example/v1?api-key=LEAKKEY&region=eu"
    api = "https://proxy.example/api/?sig=LEAKSIG&v=2"
    cfg = build(
        {"openai": {"base_url": keyed}, "slack": {"api_url": api}, "discord": {"api_url": api}}
    )
    shown = format_config(cfg) + repr(cfg)
    assert "LEAK" not in shown
    assert "https://proxy.example/v1?api-key=***&region=eu" in shown
    assert shown.count("https://proxy.example/api/?sig=***&v=2") == 2
    for path in ("slack.api_url", "openai.base_url"):  # credentials go in headers
        section, key = path.split(".")
        err = error_of({section: {key: url}})
        assert err.path == path and "LEAK" not in str(err)
    err = error_of({"openai": {"base_url": "ftp://user:LEAKPW@h/?token=LEAKKEY"}})
    assert err.path == "openai.base_url" and "LEAK" not in str(err)


def test_redact_text_redacts_each_url_in_a_sentence() -> None:
    line = "cannot reach https://a:LEAK@h/x?token=LEAK2, then http://ok/ failed."
    assert redact_text(line) == "cannot reach https://***@h/x?token=***, then http://ok/ failed."


def test_bad_storage_url_error_hides_the_password() -> None:
    err = error_of({"storage": {"url": f"bot:{DB_PASSWORD}@db"}})
    assert err.path == "storage.url"
    assert DB_PASSWORD not in str(err)


def test_a_prompt_budget_without_room_for_the_system_prompt_is_rejected() -> None:
    err = error_of({"openai": {"context_tokens": 1100, "max_output_tokens": 1024}})
    assert err.path == "openai.context_tokens"
    for key in ("openai.max_output_tokens", "openai.system_prompt", "leaves 76 tokens"):
        assert key in err.problem
    long_prompt = {"system_prompt": "Be kind. " * 400, "context_tokens": 900}
    assert error_of({"openai": {**long_prompt, "max_output_tokens": 100}}).path == (
        "openai.context_tokens"
    )
    assert build({"openai": {"context_tokens": 1300, "max_output_tokens": 1024}})


@pytest.mark.parametrize(
    "key", ["allowed_guilds", "allowed_channels", "allowed_roles", "admin_roles"]
)
def test_discord_allowlists_hold_ids_not_names(key: str) -> None:
    """A name would match nothing: the bot would ignore everyone, with no word why."""
    err = error_of({"discord": {key: ["123456789012345678", "my-server"]}})
    assert err.path == f"discord.{key}" and "'my-server'" in err.problem
    assert build({"discord": {key: [123456789012345678, "223456789012345678"]}})


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:p%40ss@h:5432/db",  # an encoded "@"
        "postgresql://u@[::1]:5432/db",
        "postgresql://u@h1:5432,h2:5433/db",
        "postgresql://u@h:/db",  # the default port
        "postgres:///db?host=/run/postgresql",
        "postgresql://u@h:5432/?dbname=db",
    ],
)
def test_postgresql_urls_the_driver_reads_as_written_are_accepted(url: str) -> None:
    check_url(url)  # raises nothing, connects nowhere
