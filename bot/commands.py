"""The bot's commands: what each one does and what it answers.

The core decides *when* a command runs (once per message, in its place in the
conversation's lane, a reset's forgetting before the lane); this module decides
*what* it does. :data:`COMMANDS` is the one list of them: the core runs them
through it, the Discord adapter registers a slash command for each, and the help
text names each (tests/test_commands.py checks that, in every language).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from .accounting import Accounting
from .config import PromptPolicy, ResetPolicy
from .models import Catalog
from .policy import reset_verdict, system_prompt_verdict
from .texts import Texts
from .tools.specs import ToolSpec
from .types import ConversationKey, IncomingMessage

MAX_SYSTEM_PROMPT_CHARS = 4000
CLEAR_ARGUMENT = "clear"  # `system clear`: back to the default prompt
FORGET_COMMAND = "forget"  # deletes a person's turns: the core then drops its prompt memo
MAX_TOOLS_LISTED = 50  # `!tools` lists at most this many
TOOL_SUMMARY_CHARS = 100


class PromptStore(Protocol):
    """The part of the store the commands use (bot/store.py)."""

    async def get_system_prompt(self, conversation: str, /) -> str | None: ...

    async def set_system_prompt(self, conversation: str, prompt: str | None, /) -> None: ...

    async def get_model(self, conversation: str, /) -> str | None: ...

    async def set_model(self, conversation: str, model: str | None, /) -> None: ...


class ToolLister(Protocol):
    """The part of the tool hub `!tools` reads (bot/tools/hub.py)."""

    def enabled(self, key: ConversationKey, /) -> bool: ...

    def available(self, key: ConversationKey, /) -> list[ToolSpec]: ...

    def down_servers(self) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class CommandEnv:
    """What a command may read and change."""

    store: PromptStore
    texts: Texts
    prefix: str  # the text-command prefix, shown in answers
    default_prompt: str
    prompt_policy: PromptPolicy
    reset_policy: ResetPolicy
    catalog: Catalog
    model_policy: PromptPolicy = "admins"
    accounting: Accounting | None = None  # None: the store keeps no usage ledger
    tools: ToolLister | None = None  # None: no tool servers configured


# A command's work: (env, its argument, the message that ran it) -> the answer.
Handler = Callable[[CommandEnv, str, IncomingMessage], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One command: its name (lower case), its work, and the key of its one-line
    description in bot/texts.py (Discord shows it in the slash-command list)."""

    name: str
    run: Handler
    description: str


async def _reset(env: CommandEnv, arg: str, msg: IncomingMessage) -> str:
    # The forgetting itself happened before the lane (forgets_conversation).
    if reset_verdict(env.reset_policy, msg) != "allowed":
        return env.texts.get("reset_denied")
    return env.texts.get("reset_done")


async def _system(env: CommandEnv, arg: str, msg: IncomingMessage) -> str:
    conv = msg.key.as_str()
    if not arg:
        custom = await env.store.get_system_prompt(conv)
        if custom is None:
            return env.texts.get("system_default", prompt=env.default_prompt)
        return env.texts.get("system_show", prompt=custom)
    verdict = system_prompt_verdict(env.prompt_policy, msg)
    if verdict != "allowed":
        return env.texts.get("system_disabled" if verdict == "disabled" else "system_denied")
    if arg.lower() == CLEAR_ARGUMENT:
        await env.store.set_system_prompt(conv, None)
        return env.texts.get("system_cleared")
    if len(arg) > MAX_SYSTEM_PROMPT_CHARS:
        return env.texts.get("system_too_long", limit=MAX_SYSTEM_PROMPT_CHARS)
    await env.store.set_system_prompt(conv, arg)
    return env.texts.get("system_set")


async def _usage(env: CommandEnv, arg: str, msg: IncomingMessage) -> str:
    if env.accounting is None:
        return env.texts.get("usage_off")
    return await env.accounting.usage_report(msg)


async def _forget(env: CommandEnv, arg: str, msg: IncomingMessage) -> str:
    if env.accounting is None:
        return env.texts.get("forget_unavailable")
    return await env.accounting.forget(msg, arg)


async def _model(env: CommandEnv, arg: str, msg: IncomingMessage) -> str:
    conv, catalog = msg.key.as_str(), env.catalog
    current = catalog.get(await env.store.get_model(conv)).name
    if not catalog.choosable:
        return env.texts.get("model_only", model=current)
    if not arg:
        return env.texts.get("model_show", model=current, models=_model_list(env))
    verdict = system_prompt_verdict(env.model_policy, msg)  # the same who-may rule
    if verdict != "allowed":
        return env.texts.get("model_disabled" if verdict == "disabled" else "model_denied")
    if arg.lower() == CLEAR_ARGUMENT:
        await env.store.set_model(conv, None)
        return env.texts.get("model_set", model=catalog.default.name)
    chosen = catalog.find(arg)
    if chosen is None:
        return env.texts.get("model_unknown", model=arg, models=_model_list(env))
    await env.store.set_model(conv, chosen.name)
    return env.texts.get("model_set", model=chosen.name)


def _model_list(env: CommandEnv) -> str:
    lines = []
    for info in env.catalog.models:
        line = f"`{info.name}`"
        price = env.accounting.prices.get(info.name) if env.accounting else None
        if price is not None:  # one price table: usage.prices
            prices = {"price_in": f"{price.input:g}", "price_out": f"{price.output:g}"}
            line += " " + env.texts.get("model_price", **prices)
        lines.append(line)
    return "\n".join(lines)


async def _help(env: CommandEnv, arg: str, msg: IncomingMessage) -> str:
    return env.texts.get("help", prefix=env.prefix)


async def _tools(env: CommandEnv, arg: str, msg: IncomingMessage) -> str:
    if env.tools is None or not env.tools.enabled(msg.key):
        return env.texts.get("tools_off")
    specs = env.tools.available(msg.key)
    lines = [_tool_line(spec) for spec in specs[:MAX_TOOLS_LISTED]]
    text = (
        env.texts.get("tools_list", tools="\n".join(lines))
        if lines
        else env.texts.get("tools_none")
    )
    down = env.tools.down_servers()
    if down:
        text += "\n" + env.texts.get("tools_down", servers=", ".join(down))
    return text


def _tool_line(spec: ToolSpec) -> str:
    summary = spec.description.strip().split("\n", 1)[0][:TOOL_SUMMARY_CHARS]
    mark = " ✋" if spec.confirm else ""  # runs only after the asker approves
    return f"- `{spec.name}`{mark} ({spec.server}): {summary}"


COMMANDS: Mapping[str, CommandSpec] = {
    spec.name: spec
    for spec in (
        CommandSpec("reset", _reset, "slash_reset"),
        CommandSpec("system", _system, "slash_system"),
        CommandSpec("usage", _usage, "slash_usage"),
        CommandSpec(FORGET_COMMAND, _forget, "slash_forget"),
        CommandSpec("model", _model, "slash_model"),
        CommandSpec("tools", _tools, "slash_tools"),
        CommandSpec("help", _help, "slash_help"),
    )
}


async def command_text(env: CommandEnv, name: str, arg: str, msg: IncomingMessage) -> str:
    """The answer to command ``name`` (lower case) with ``arg``, after doing its work."""
    spec = COMMANDS.get(name)
    if spec is None:
        return env.texts.get("unknown_command", command=name, prefix=env.prefix)
    return await spec.run(env, arg, msg)


def forgets_conversation(env: CommandEnv, name: str, msg: IncomingMessage) -> bool:
    """Whether command ``name`` makes the bot forget the conversation. The core does
    that at once, not when the lane gets to the command: messages that arrive after
    it are stored at once and must survive it."""
    return name == "reset" and reset_verdict(env.reset_policy, msg) == "allowed"
