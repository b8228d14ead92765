"""Loading, checking and showing the bot's configuration.

Settings live in a YAML file; secrets come from the environment through
``${VAR}`` and ``${VAR:-default}`` references inside string values (``$${``
writes a literal ``${``). Every problem is a :class:`~bot.errors.ConfigError`
naming the dotted key path, so start-up can print one line and exit.

Rules worth knowing:

- A key left out of the file takes its default. Keys that the shipped
  ``config.yaml`` fills from the environment (``openai.api_key``, the platform
  tokens, ``storage.url``, ...) default to the same ``${VAR:-...}`` reference, so
  even an empty file picks up the environment.
- ``null``, or an empty string for a non-text key, also means "the default";
  this lets ``${SOME_VAR:-}`` leave a number or switch at its default.
- Values from the environment are text: ``"0.5"``, ``"true"``/``"1"``/``"on"``
  and comma-separated lists (``"a,b"``) are converted to the key's type.
- An empty platform token means that platform is off; it is not an error.
- ``openai.api_key`` is required, because answering is the bot's only job and a
  missing key should stop start-up, not fail at the first message. A local
  OpenAI-compatible server (``openai.base_url`` set) often needs no key, so then
  an empty key becomes the placeholder ``"not-needed"`` (the SDK insists on some
  key). Callers that supply the model themselves (``--local``) pass
  ``require_api_key=False`` and get the placeholder too. ``python -m bot check``
  reports the same error a start would.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Any,
    Literal,
    TypeGuard,
    TypeVar,
    get_args,
    get_origin,
    get_type_hints,
)

import yaml

from .errors import WHOLE_FILE, ConfigError
from .prices import EXAMPLE_PRICES, EXAMPLE_PRICES_AS_OF
from .quotas import check_usage
from .reasoning import ReasoningEffort, ReasoningMode
from .redact import redact_url, userinfo_end
from .shards import MAX_SHARDS, shard_plan
from .tools.config import ToolsConfig, check_tools

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

log = logging.getLogger(__name__)

Language = Literal["en", "ko"]
PromptPolicy = Literal["anyone", "admins", "nobody"]
ResetPolicy = Literal["anyone", "admins"]
SlackMode = Literal["socket", "http"]
SlackScope = Literal["thread", "channel"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LogFormat = Literal["text", "json"]
VisionMode = Literal["auto", "on", "off"]

NO_KEY_PLACEHOLDER = "not-needed"  # api_key sent to a local server that needs none
# Slack's token kinds by prefix ("xoxe.xoxb-": a bot token with rotation turned on).
BOT_TOKEN_PREFIXES = ("xoxb-", "xoxe.xoxb-")
APP_TOKEN_PREFIX = "xapp-"
SLACK_TOKEN_KINDS = {
    "xoxb-": "a bot token (xoxb-...)",
    "xapp-": "an app-level token (xapp-...)",
    "xoxp-": "a user token (xoxp-...)",
    "xoxe-": "a refresh token (xoxe-...)",
    "xoxc-": "a browser session token (xoxc-...)",
    "xoxa-": "a workspace app token (xoxa-...)",
}
SECRET_SET = "***set***"  # how redacted() shows a secret that has a value
# The prompt budget (context_tokens - max_output_tokens) must hold the default system
# prompt and a short message. Config has no tokenizer (loading one is slow), so the
# prompt is estimated low, at one token per 4 bytes of UTF-8: a budget rejected here
# can never work, and the trimmer still shortens what a borderline one cannot fit.
MIN_MESSAGE_TOKENS = 64
PROMPT_OVERHEAD_TOKENS = 16  # message wrappers, reply priming, the group-chat line's start
BYTES_PER_TOKEN_ESTIMATE = 4
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant in a group chat. Answer clearly and concisely, "
    "use Markdown where it helps, and reply in the language the user writes in."
)

# Keys missing from the file default to these references (the shipped config.yaml
# uses the same ones), so the environment works even with a near-empty file.
ENV_DEFAULTS: Mapping[str, str] = {
    "language": "${BOT_LANGUAGE:-en}",
    "openai.api_key": "${OPENAI_API_KEY:-}",
    "openai.base_url": "${OPENAI_BASE_URL:-}",
    "openai.model": "${OPENAI_MODEL:-gpt-4o-mini}",
    "openai.max_concurrent_requests": "${OPENAI_MAX_CONCURRENT_REQUESTS:-32}",
    "storage.url": "${DATABASE_URL:-sqlite:///data/bot.db}",
    "discord.token": "${DISCORD_BOT_TOKEN:-}",
    "discord.shard_count": "${DISCORD_SHARD_COUNT:-1}",
    "discord.shard_ids": "${DISCORD_SHARD_IDS:-}",
    "slack.bot_token": "${SLACK_BOT_TOKEN:-}",
    "slack.app_token": "${SLACK_APP_TOKEN:-}",
    "slack.signing_secret": "${SLACK_SIGNING_SECRET:-}",
    "logging.level": "${LOG_LEVEL:-INFO}",
    "logging.format": "${LOG_FORMAT:-text}",
    "metrics.port": "${METRICS_PORT:-0}",
}

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
# "$${" (escape) | "${body}" (reference) | "${" without its "}" (an error)
_REFERENCE = re.compile(r"\$\$\{|\$\{(?P<body>[^}]*)\}|\$\{")
_REFERENCE_BODY = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?", re.DOTALL)
_SECRET_NAME = re.compile(r"token|secret|key|pass|pwd|auth", re.IGNORECASE)

# Field metadata: "secret" hides the value; "url" redacts its credentials
# (bot/redact.py) wherever it is shown;
# "nonempty", "min"/"max" (inclusive) and "gt" (exclusive) are checked on load.
_SECRET: Mapping[str, Any] = {"secret": True}
_URL: Mapping[str, Any] = {"url": True}
_NONEMPTY: Mapping[str, Any] = {"nonempty": True}
_POSITIVE: Mapping[str, Any] = {"gt": 0}


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """One model people may pick with ``!model`` (an ``openai.models`` entry)."""

    name: str = field(default="", metadata=_NONEMPTY)
    context_tokens: int = field(default=0, metadata={"min": 0})  # 0: openai.context_tokens
    vision: VisionMode | None = None  # None: openai.vision
    reasoning: ReasoningMode | None = None  # None: openai.reasoning


@dataclass(frozen=True, slots=True)
class OpenAIConfig:
    """How to reach the model and how to ask it."""

    api_key: str = field(default="", repr=False, metadata=_SECRET)
    base_url: str | None = field(default=None, repr=False, metadata=_URL)  # None: api.openai.com
    model: str = field(default="gpt-4o-mini", metadata=_NONEMPTY)
    temperature: float = field(default=0.7, metadata={"min": 0, "max": 2})
    max_output_tokens: int = field(default=1024, metadata=_POSITIVE)
    context_tokens: int = field(default=16000, metadata=_POSITIVE)  # prompt + answer budget
    request_timeout_s: float = field(default=90.0, metadata=_POSITIVE)  # whole answer
    first_token_timeout_s: float = field(default=30.0, metadata=_POSITIVE)
    max_retries: int = field(default=3, metadata={"min": 0, "max": 10})
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    # Model requests streaming at once, across all conversations; more wait in turn.
    max_concurrent_requests: int = field(default=32, metadata={"min": 1, "max": 10_000})
    # Reasoning models (bot/reasoning.py): auto decides by the model's name.
    reasoning: ReasoningMode = "auto"
    reasoning_effort: ReasoningEffort = ""  # empty: not sent (the server's default)
    show_reasoning: bool = False  # a short collapsed line of the thinking before the answer
    vision: VisionMode = "auto"  # send images: auto (by model name, learned from a 400)
    # Models a conversation may switch to with !model (openai.model is always one).
    models: tuple[ModelChoice, ...] = ()


@dataclass(frozen=True, slots=True, repr=False)
class StorageConfig:
    """Where history lives: ``sqlite:///path`` or ``memory://``."""

    url: str = field(default="sqlite:///data/bot.db", metadata={"nonempty": True, "url": True})
    # Turns older than this many days are deleted in the background; 0 keeps them forever.
    retention_days: float = field(default=0.0, metadata={"min": 0, "max": 36_500})
    # PostgreSQL only: at most this many connections per instance.
    pool_size: int = field(default=10, metadata={"min": 1, "max": 1000})

    def __repr__(self) -> str:
        return (
            f"StorageConfig(url={redact_url(self.url)!r}, retention_days={self.retention_days!r}"
            f", pool_size={self.pool_size!r})"
        )


@dataclass(frozen=True, slots=True)
class CommandsConfig:
    """Text commands (``!reset``, ``!system``, ``!help``)."""

    prefix: str = field(default="!", metadata=_NONEMPTY)
    system_prompt_policy: PromptPolicy = "admins"
    reset_policy: ResetPolicy = "anyone"  # who may !reset a shared conversation
    model_policy: PromptPolicy = "admins"  # who may !model <name> (a DM: the person)


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Fair use: one person cannot spend the whole model budget."""

    # Messages one person may send per minute (a burst of this many, then refilled
    # evenly); 0 turns the limit off. Commands are not counted.
    user_messages_per_minute: int = field(default=20, metadata={"min": 0, "max": 100_000})
    # Unanswered messages one conversation holds, in all and from one person; a
    # message beyond either is not stored or answered, and its sender is told once.
    max_waiting_per_conversation: int = field(default=20, metadata={"min": 1, "max": 10_000})
    max_waiting_per_person: int = field(default=3, metadata={"min": 1, "max": 10_000})
    # Memory for the history caches (the store's recent turns and the prompt memo,
    # half each), in MiB; counted in bytes, so long messages cannot outgrow it.
    memory_cache_mb: int = field(default=64, metadata={"min": 0, "max": 65_536})
    # Platform messages one answer may take; past it the answer stops with a note.
    max_messages_per_answer: int = field(default=10, metadata={"min": 1, "max": 1000})


@dataclass(frozen=True, slots=True)
class AttachmentsConfig:
    """Images, text files and PDFs sent with a message (bot/attachments.py)."""

    max_file_mb: float = field(default=10.0, metadata={"gt": 0, "max": 100})
    max_files_per_message: int = field(default=4, metadata={"min": 0, "max": 20})  # 0: off
    max_pdf_pages: int = field(default=30, metadata={"min": 1, "max": 1000})
    max_document_chars: int = field(default=40_000, metadata={"min": 100, "max": 1_000_000})
    # Downscaled images kept per conversation for follow-ups; the oldest go first.
    image_mb_per_conversation: float = field(default=3.0, metadata={"min": 0, "max": 1000})
    download_timeout_s: float = field(default=20.0, metadata={"gt": 0, "max": 300})


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    """``python -m bot console``: a chat in the terminal."""

    session: str = field(default="default", metadata=_NONEMPTY)
    user_name: str | None = None  # None: the login name


@dataclass(frozen=True, slots=True)
class DiscordConfig:
    """The Discord adapter; an empty token turns it off."""

    token: str = field(default="", repr=False, metadata=_SECRET)
    allow_bots: bool = False
    auto_thread: bool = False
    streaming: bool = True
    allowed_guilds: tuple[str, ...] = ()  # empty: everywhere
    allowed_channels: tuple[str, ...] = ()
    allowed_roles: tuple[str, ...] = ()
    admin_roles: tuple[str, ...] = ()
    slash_commands: bool = True
    # Empty: Discord itself. Another URL serves a REST proxy or a test double (the
    # gateway address is then asked from that server, as Discord clients always do).
    api_url: str = field(default="", repr=False, metadata=_URL)
    # Gateway shards across all processes (0: Discord's recommendation), and the ones
    # this process runs (empty: all); bot/shards.py.
    shard_count: int = field(default=1, metadata={"min": 0, "max": MAX_SHARDS})
    shard_ids: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        """Whether a token is configured."""
        return bool(self.token)


@dataclass(frozen=True, slots=True)
class SlackConfig:
    """The Slack adapter; an empty bot token turns it off."""

    bot_token: str = field(default="", repr=False, metadata=_SECRET)
    app_token: str = field(default="", repr=False, metadata=_SECRET)
    signing_secret: str = field(default="", repr=False, metadata=_SECRET)
    mode: SlackMode = "socket"
    http_host: str = field(default="0.0.0.0", metadata=_NONEMPTY)  # Slack must reach it
    http_port: int = field(default=3000, metadata={"min": 1, "max": 65535})
    http_path: str = field(default="/slack/events", metadata=_NONEMPTY)
    scope: SlackScope = "thread"
    allow_bots: bool = False
    streaming: bool = True
    allowed_teams: tuple[str, ...] = ()  # empty: everywhere
    allowed_channels: tuple[str, ...] = ()
    allowed_users: tuple[str, ...] = ()
    admin_users: tuple[str, ...] = ()
    # Empty: Slack's own Web API; another URL for a proxy or test double.
    api_url: str = field(default="", repr=False, metadata=_URL)

    @property
    def enabled(self) -> bool:
        """Whether a bot token is configured."""
        return bool(self.bot_token)


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """Log verbosity."""

    level: LogLevel = "INFO"
    format: LogFormat = "text"  # json: one object per line (bot/jsonlog.py)


@dataclass(frozen=True, slots=True)
class RecoveryConfig:
    """Answering, after a restart, the questions a crash or shutdown cut off."""

    # Cut-off questions younger than this are answered at start; older ones are
    # logged and left. 0 turns recovery off. At most the week dedupe rows are kept.
    max_age_minutes: int = field(default=15, metadata={"min": 0, "max": 7 * 24 * 60})


@dataclass(frozen=True, slots=True)
class UsageConfig:
    """The usage ledger (bot/usage.py) and its price table (bot/prices.py)."""

    enabled: bool = True
    # "<model> <input> <output>", USD per million tokens; a model not listed: tokens only
    prices: tuple[str, ...] = EXAMPLE_PRICES
    prices_as_of: str = EXAMPLE_PRICES_AS_OF  # when they were copied from the price list


@dataclass(frozen=True, slots=True)
class QuotasConfig:
    """Spending caps checked before each model call (bot/quotas.py); 0: no cap."""

    person_daily_tokens: int = field(default=0, metadata={"min": 0})
    person_daily_cost: float = field(default=0.0, metadata={"min": 0})  # USD
    workspace_monthly_tokens: int = field(default=0, metadata={"min": 0})
    workspace_monthly_cost: float = field(default=0.0, metadata={"min": 0})  # USD
    fallback_model: str | None = None  # answer with this model instead of refusing


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """The operations endpoint (bot/metrics.py): /metrics, /healthz, /readyz."""

    port: int = field(default=0, metadata={"min": 0, "max": 65535})  # 0: off
    host: str = field(default="127.0.0.1", metadata=_NONEMPTY)


@dataclass(frozen=True, slots=True)
class InstancesConfig:
    """Several bot processes on one PostgreSQL database (docs/scale-out.md)."""

    # A dead instance's conversations are taken over by another within this long.
    failover_s: float = field(default=30.0, metadata={"min": 10, "max": 3600})


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration, as loaded and checked."""

    language: Language = "en"
    openai: OpenAIConfig = field(default_factory=OpenAIConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    commands: CommandsConfig = field(default_factory=CommandsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    attachments: AttachmentsConfig = field(default_factory=AttachmentsConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    discord: DiscordConfig = field(default_factory=DiscordConfig)
    slack: SlackConfig = field(default_factory=SlackConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)
    usage: UsageConfig = field(default_factory=UsageConfig)
    quotas: QuotasConfig = field(default_factory=QuotasConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    tools: ToolsConfig = field(default_factory=ToolsConfig)  # bot/tools/config.py
    instances: InstancesConfig = field(default_factory=InstancesConfig)


# -- loading -------------------------------------------------------------------


def load_config(
    path: str | Path, env: Mapping[str, str], *, require_api_key: bool = True
) -> Config:
    """Read, interpolate and check the YAML file at ``path``."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(WHOLE_FILE, f"file not found: {file}") from None
    except UnicodeDecodeError:
        raise ConfigError(WHOLE_FILE, f"{file} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(WHOLE_FILE, f"cannot read {file}: {exc.strerror or exc}") from None
    return config_from_dict(_parse_yaml(text, str(file)), env, require_api_key=require_api_key)


def config_from_dict(
    data: Mapping[str, Any] | None, env: Mapping[str, str], *, require_api_key: bool = True
) -> Config:
    """Build a checked Config from already-parsed YAML data (``None`` = empty)."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(WHOLE_FILE, f"the top level must be key: value lines, got {_kind(data)}")
    return _check(_build(Config, data, "", env), require_api_key)


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys (YAML would let the last one win)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _value in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # "<<: *base" may legitimately be overridden
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, str | int | float | bool) and key in seen:
            line = seen[key].start_mark.line + 1
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {line})", key_node.start_mark
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse_yaml(text: str, name: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(WHOLE_FILE, f"{name}: YAML syntax error{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(WHOLE_FILE, f"{name}: YAML syntax error: {exc}") from None


# -- building: the dataclasses above are the schema ----------------------------

_D = TypeVar("_D", bound="DataclassInstance")


def _build(cls: type[_D], data: Mapping[Any, Any], path: str, env: Mapping[str, str]) -> _D:
    """Make ``cls`` from ``data``: sections recurse, leaves are interpolated and converted."""
    fields = dataclasses.fields(cls)
    _reject_unknown(data, [f.name for f in fields], path)
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in fields:
        key = _join(path, f.name)
        hint = hints[f.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            values[f.name] = _build(hint, _section(data.get(f.name), key), key, env)
        elif _is_section_list(hint):
            values[f.name] = _build_list(get_args(hint)[0], data.get(f.name), key, env)
        elif f.name in data:
            raw = _interpolate(data[f.name], key, env)
            values[f.name] = _convert(hint, raw, key, f)
        elif key in ENV_DEFAULTS:
            values[f.name] = _convert(hint, _interpolate(ENV_DEFAULTS[key], key, env), key, f)
    return cls(**values)


def _is_section_list(hint: Any) -> bool:
    args = get_args(hint)
    return get_origin(hint) is tuple and bool(args) and dataclasses.is_dataclass(args[0])


def _build_list(cls: type[_D], value: Any, path: str, env: Mapping[str, str]) -> tuple[_D, ...]:
    """A list of sections; an item that is only text (or "a,b" from the environment)
    is the first field's value (``models: [gpt-4o-mini, o3-mini]``)."""
    value = _interpolate(value, path, env) if isinstance(value, str) else value
    if value is None or value == "":
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ConfigError(path, f"must be a list, got {_kind(value)}")
    first = dataclasses.fields(cls)[0].name
    built = []
    for i, item in enumerate(items):
        where = f"{path}[{i}]"
        if isinstance(item, str):
            item = {first: item.strip()}
        built.append(_build(cls, _section(item, where), where, env))
    return tuple(built)


def _section(value: Any, path: str) -> Mapping[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(path, f"must be a section of key: value lines, got {_kind(value)}")
    return value


def _reject_unknown(data: Mapping[Any, Any], known: Sequence[str], path: str) -> None:
    unknown = []
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(_join(path, str(key)), "keys must be text")
        if key not in known:
            unknown.append(key)
    if not unknown:
        return
    first, rest = unknown[0], unknown[1:]
    problem = "unknown key" + _suggest(first, known, path)
    if rest:
        problem += "; also unknown: " + ", ".join(_join(path, k) for k in rest)
    raise ConfigError(_join(path, first), problem)


def _suggest(key: str, known: Sequence[str], path: str) -> str:
    """A "did you mean" hint: a close key here, or the same key in another section."""
    close = difflib.get_close_matches(key.lower(), known, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {_join(path, close[0])}?)"
    if path:
        return f" (known keys: {', '.join(known)})"
    elsewhere = [
        f"{name}.{f.name}"
        for name, hint in get_type_hints(Config).items()
        if isinstance(hint, type) and dataclasses.is_dataclass(hint)
        for f in dataclasses.fields(hint)
    ]
    close = difflib.get_close_matches(key.lower(), [p.split(".")[1] for p in elsewhere], n=1)
    if close:
        match = next(p for p in elsewhere if p.split(".")[1] == close[0])
        return f" (did you mean {match}? it belongs in the {match.split('.')[0]} section)"
    return f" (known sections: {', '.join(known)})"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# -- ${VAR} interpolation -------------------------------------------------------


def _interpolate(value: Any, path: str, env: Mapping[str, str]) -> Any:
    """Expand references in every string inside ``value`` (keys are left alone)."""
    if isinstance(value, str):
        return expand(value, path, env)
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", env) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {k: _interpolate(v, _join(path, str(k)), env) for k, v in value.items()}
    return value


def expand(text: str, path: str, env: Mapping[str, str]) -> str:
    """Expand ``${VAR}``, ``${VAR:-default}`` and ``$${`` in one string.

    ``${VAR:-default}`` uses the default when VAR is unset or empty (as in a
    shell); ``${VAR}`` with VAR unset is an error naming ``path`` and VAR.
    Substituted values are not expanded again.
    """

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        body = match.group("body")
        if body is None:
            raise ConfigError(path, "unclosed ${ (write $${ for a literal ${)")
        ref = _REFERENCE_BODY.fullmatch(body)
        if ref is None:
            raise ConfigError(
                path, f"bad reference ${{{body}}}: expected ${{NAME}} or ${{NAME:-default}}"
            )
        name, default = ref.group("name"), ref.group("default")
        if default is not None:
            return env.get(name) or default
        if name not in env:
            raise ConfigError(
                path,
                f"environment variable {name} is not set "
                f"(set it, or write ${{{name}:-default}} to make it optional)",
                names_source=True,
            )
        return env[name]

    return _REFERENCE.sub(replace, text)


# -- converting one value to its field's type ------------------------------------


def _convert(hint: Any, value: Any, path: str, f: dataclasses.Field[Any]) -> Any:
    """Turn a YAML or environment value into the field's type, then range-check it."""
    meta = f.metadata
    if get_origin(hint) is Mapping:
        return {} if value is None else _to_str_map(value, path)
    optional = type(None) in get_args(hint)
    if value is None or (value == "" and (optional or hint is not str)):
        return None if optional else f.default
    shown = "(hidden)" if meta.get("secret") else repr(value)
    if meta.get("url") and isinstance(value, str):
        shown = repr(redact_url(value))
    literal = [a for a in get_args(hint) if get_origin(a) is Literal]
    if optional and literal:  # "VisionMode | None": the choices, or left out
        return _to_choice(value, get_args(literal[0]), path)
    if hint is bool:
        return _to_bool(value, path, shown)
    if hint is int or hint is float:
        return _check_range(_to_number(hint, value, path, meta, shown), path, meta)
    if get_origin(hint) is Literal:
        return _to_choice(value, get_args(hint), path)
    if get_origin(hint) is tuple:
        return _to_strs(value, path)
    text = _to_str(value, path, shown)
    if optional and not text:
        return None
    if meta.get("nonempty") and not text:
        raise ConfigError(path, "must not be empty")
    return text


def _to_bool(value: Any, path: str, shown: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | str) and str(value).strip().lower() in _TRUE | _FALSE:
        return str(value).strip().lower() in _TRUE
    raise ConfigError(path, f"must be true or false, got {shown}")


def _to_number(
    hint: type[int] | type[float], value: Any, path: str, meta: Mapping[str, Any], shown: str
) -> int | float:
    wanted = f"must be {_describe_number(hint, meta)}, got {shown}"
    if isinstance(value, bool):
        raise ConfigError(path, wanted)
    if hint is int:
        if isinstance(value, int):
            return value
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d[\d_]*\s*", value):
            return int(value)
        raise ConfigError(path, wanted)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(path, wanted) from None
    if not math.isfinite(number):
        raise ConfigError(path, wanted)
    return number


def _check_range(number: int | float, path: str, meta: Mapping[str, Any]) -> int | float:
    low, high, above = meta.get("min"), meta.get("max"), meta.get("gt")
    if (
        (low is not None and number < low)
        or (high is not None and number > high)
        or (above is not None and number <= above)
    ):
        hint = int if isinstance(number, int) else float
        raise ConfigError(path, f"must be {_describe_number(hint, meta)}, got {number!r}")
    return number


def _describe_number(hint: type[int] | type[float], meta: Mapping[str, Any]) -> str:
    noun = "a whole number" if hint is int else "a number"
    low, high, above = meta.get("min"), meta.get("max"), meta.get("gt")
    if low is not None and high is not None:
        return f"{noun} between {low:g} and {high:g}"
    if above is not None:
        return f"{noun} greater than {above:g}"
    if low is not None:
        return f"{noun} of at least {low:g}"
    return noun


def _to_choice(value: Any, choices: tuple[str, ...], path: str) -> str:
    if isinstance(value, str):
        for choice in choices:
            if value.strip().lower() == choice.lower():
                return choice
    problem = f"must be one of {', '.join(choices)}, got {value!r}"
    close = difflib.get_close_matches(str(value).lower(), [c.lower() for c in choices], n=1)
    if close:
        problem += f" (did you mean {close[0]}?)"
    raise ConfigError(path, problem)


def _to_strs(value: Any, path: str) -> tuple[str, ...]:
    """A list, or comma-separated text (from the environment); IDs may be numbers."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ConfigError(path, f"must be a list, got {_kind(value)}")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise ConfigError(f"{path}[{i}]", f"must be text or an ID, got {_kind(item)}")
        if str(item).strip():
            out.append(str(item).strip())
    return tuple(out)


def _to_str_map(value: Any, path: str) -> dict[str, str]:
    """A section of text values (an MCP server's env or headers)."""
    if not isinstance(value, Mapping):
        raise ConfigError(path, f"must be a section of NAME: value lines, got {_kind(value)}")
    out = {}
    for key, item in value.items():
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise ConfigError(f"{path}.{key}", f"must be text, got {_kind(item)}")
        out[str(key)] = str(item)
    return out


def _to_str(value: Any, path: str, shown: str) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(path, f"must be text, got {_kind(value)} {shown} (put it in quotes)")


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a section"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__


# -- checks that involve more than one key ----------------------------------------


def _check(cfg: Config, require_api_key: bool) -> Config:
    _check_openai(cfg.openai)
    _check_storage(cfg.storage)
    check_tools(cfg.tools)
    _check_slack(cfg.slack)
    _check_api_url("discord.api_url", cfg.discord.api_url)
    _check_discord_ids(cfg.discord)
    shard_plan(cfg.discord.shard_count, cfg.discord.shard_ids)
    _check_api_url("slack.api_url", cfg.slack.api_url)
    check_usage(cfg.usage, cfg.quotas, cfg.openai.model)
    if any(ch.isspace() for ch in cfg.commands.prefix):
        raise ConfigError(
            "commands.prefix", f"must not contain spaces, got {cfg.commands.prefix!r}"
        )
    if cfg.openai.api_key:
        return cfg
    if cfg.openai.base_url or not require_api_key:
        log.info("openai.api_key is empty; a local server gets a placeholder key")
        openai = dataclasses.replace(cfg.openai, api_key=NO_KEY_PLACEHOLDER)
        return dataclasses.replace(cfg, openai=openai)
    raise ConfigError(
        "openai.api_key",
        "not set: set OPENAI_API_KEY, or set openai.base_url (OPENAI_BASE_URL) "
        "for a local server that needs no key",
    )


def _check_models(ai: OpenAIConfig) -> None:
    seen = {ai.model}
    for i, choice in enumerate(ai.models):
        where = f"openai.models[{i}]"
        if choice.name in seen and choice.name != ai.model:
            raise ConfigError(f"{where}.name", f"{choice.name!r} is listed twice")
        seen.add(choice.name)
        context = choice.context_tokens or ai.context_tokens
        if ai.max_output_tokens >= context:
            raise ConfigError(
                f"{where}.context_tokens",
                f"must be larger than openai.max_output_tokens ({ai.max_output_tokens}), "
                f"got {context}",
            )


def _check_openai(ai: OpenAIConfig) -> None:
    _check_models(ai)
    if ai.max_output_tokens >= ai.context_tokens:
        raise ConfigError(
            "openai.max_output_tokens",
            f"must be smaller than openai.context_tokens ({ai.context_tokens}), "
            f"got {ai.max_output_tokens}",
        )
    _check_prompt_budget(ai)
    if ai.first_token_timeout_s > ai.request_timeout_s:
        raise ConfigError(
            "openai.first_token_timeout_s",
            f"must not exceed openai.request_timeout_s ({ai.request_timeout_s:g}), "
            f"got {ai.first_token_timeout_s:g}",
        )
    _check_api_url("openai.base_url", ai.base_url or "")


def _check_prompt_budget(ai: OpenAIConfig) -> None:
    budget = ai.context_tokens - ai.max_output_tokens
    prompt = len(ai.system_prompt.strip().encode("utf-8")) // BYTES_PER_TOKEN_ESTIMATE
    needed = prompt + PROMPT_OVERHEAD_TOKENS + MIN_MESSAGE_TOKENS
    if budget < needed:
        raise ConfigError(
            "openai.context_tokens",
            f"openai.context_tokens ({ai.context_tokens}) minus openai.max_output_tokens "
            f"({ai.max_output_tokens}) leaves {budget} tokens for the prompt, but "
            f"openai.system_prompt (about {prompt} tokens) and a short message need at "
            f"least {needed}: raise openai.context_tokens or lower openai.max_output_tokens",
        )


def _check_api_url(path: str, url: str) -> None:
    """An API URL: http(s), and no credentials (the key or token goes in a header)."""
    if not url:
        return
    shown = redact_url(url)
    if not url.startswith(("http://", "https://")):
        raise ConfigError(path, f"must start with http:// or https://, got {shown!r}")
    if userinfo_end(url.split("://", 1)[1]) >= 0:
        raise ConfigError(
            path,
            f"must not hold user:password@ (the key or token is sent as a header), got {shown!r}",
        )


def _check_storage(storage: StorageConfig) -> None:
    if "://" not in storage.url:
        raise ConfigError(
            "storage.url",
            "must look like sqlite:///data/bot.db, memory:// or postgresql://host/db, "
            f"got {redact_url(storage.url)!r}",
        )


def _check_discord_ids(discord: DiscordConfig) -> None:
    """Discord's allowlists hold IDs (numbers): a name would match nothing, and the
    bot would silently ignore every server, channel or person it was meant to admit."""
    for key in ("allowed_guilds", "allowed_channels", "allowed_roles", "admin_roles"):
        for entry in getattr(discord, key):
            if not entry.isdigit():
                raise ConfigError(
                    f"discord.{key}",
                    f"holds IDs (numbers; Developer Mode, then Copy ID), got {entry!r}",
                )


def _check_slack(slack: SlackConfig) -> None:
    _check_slack_token_kinds(slack)
    if not slack.bot_token:
        if slack.app_token:
            raise ConfigError(
                "slack.bot_token",
                "not set, but slack.app_token is: set SLACK_BOT_TOKEN (xoxb-...) to turn "
                "Slack on, or unset SLACK_APP_TOKEN",
            )
        return
    if slack.mode == "socket" and not slack.app_token:
        raise ConfigError(
            "slack.app_token",
            "socket mode needs an app-level token: set SLACK_APP_TOKEN (xapp-..., "
            "scope connections:write), or use slack.mode: http",
        )
    if slack.mode == "http" and not slack.signing_secret:
        raise ConfigError("slack.signing_secret", "HTTP mode needs SLACK_SIGNING_SECRET")
    if not slack.http_path.startswith("/"):
        raise ConfigError("slack.http_path", f"must start with /, got {slack.http_path!r}")


def _check_slack_token_kinds(slack: SlackConfig) -> None:
    """Each token is of its kind: a user token (xoxp-) would make the bot post as that
    person and take their messages for its own."""
    bot, app = slack.bot_token, slack.app_token
    if bot.startswith("xapp-") and app.startswith(BOT_TOKEN_PREFIXES):
        raise ConfigError(
            "slack.bot_token",
            "the bot token (xoxb-...) and the app token (xapp-...) look swapped",
        )
    if bot and not bot.startswith(BOT_TOKEN_PREFIXES):
        kind = SLACK_TOKEN_KINDS.get(bot[:5], "not a Slack token")
        raise ConfigError(
            "slack.bot_token",
            f"must be the Bot User OAuth Token (xoxb-...); this one is {kind}",
        )
    if app and not app.startswith(APP_TOKEN_PREFIX):
        kind = SLACK_TOKEN_KINDS.get(app[:5], "not a Slack token")
        raise ConfigError(
            "slack.app_token",
            f"must be an app-level token (xapp-..., scope connections:write); this one is {kind}",
        )


# -- showing ------------------------------------------------------------------------


def redacted(cfg: Config) -> dict[str, Any]:
    """The effective configuration as plain data, with every secret hidden.

    A secret shows as ``"***set***"`` when it has a value and ``""`` when not;
    a password inside a URL shows as ``***``.
    """
    return _redact(cfg)


def format_config(cfg: Config) -> str:
    """The effective configuration as YAML, secrets hidden (for ``python -m bot check``)."""
    return yaml.safe_dump(redacted(cfg), sort_keys=False, allow_unicode=True, width=100)


def _redact(obj: DataclassInstance) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out[f.name] = _redact(value)
        elif isinstance(value, str) and (f.metadata.get("secret") or _SECRET_NAME.search(f.name)):
            out[f.name] = _hide(value)
        elif isinstance(value, str) and f.metadata.get("url"):
            out[f.name] = redact_url(value)
        elif isinstance(value, Mapping):  # secret values (MCP env, headers) are hidden
            secret = bool(f.metadata.get("secret"))
            out[f.name] = {k: _hide(v) if secret else v for k, v in value.items()}
        elif isinstance(value, tuple):
            out[f.name] = [_redact(v) if _is_instance(v) else v for v in value]
        else:
            out[f.name] = value
    return out


def _is_instance(value: object) -> TypeGuard[DataclassInstance]:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _hide(secret: str) -> str:
    if not secret:
        return ""
    return NO_KEY_PLACEHOLDER if secret == NO_KEY_PLACEHOLDER else SECRET_SET


__all__ = [
    "CommandsConfig",
    "Config",
    "ConsoleConfig",
    "DiscordConfig",
    "LoggingConfig",
    "OpenAIConfig",
    "SlackConfig",
    "StorageConfig",
    "config_from_dict",
    "expand",
    "format_config",
    "load_config",
    "redact_url",
    "redacted",
]
