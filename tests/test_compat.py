"""Contract tests of the compat modules: the one place each library's internals are used.

Each compat module (``*compat.py`` under bot/, adapters/, storage/) names the library
it wraps (``DISTRIBUTION``) and the version it was written against
(``WRITTEN_AGAINST``, the pin in requirements.txt). The tests below check that every
internal it uses still has the shape it relies on, with a small real call where one is
cheap, and fail with a message naming the library and the installed version. So after
an upgrade this file fails, and says where to look; the rest of the suite should not.

The last tests walk the AST of bot/, adapters/ and storage/: no other module may use
a ``_``-prefixed name of another package.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import inspect
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import discord
import discord.gateway
import discord.http
import httpx2
import openai
import pytest
import tiktoken
import yarl

from adapters.discord import compat as discord_compat
from adapters.slack.adapter import SlackAdapter
from bot import openai_compat, tiktoken_compat
from bot.config import SlackConfig
from bot.core import Core
from fakes.fake_discord import FakeDiscord, guild, text_channel, user
from fakes.fake_openai import FakeOpenAI, server_error
from fakes.fake_slack import FakeSlack
from fakes.fixtures import FAKE_API_KEY

ROOT = Path(__file__).resolve().parent.parent
OWN_PACKAGES = ("bot", "adapters", "storage")
OWN_ROOTS = frozenset({*OWN_PACKAGES, "tests", "bench"})
# Names that start with "_" but are public API: namedtuple's methods, Enum's hooks,
# and typeshed's typing-only module.
PUBLIC_UNDERSCORE = frozenset(
    {"_replace", "_asdict", "_fields", "_field_defaults", "_make"}
    | {"_value_", "_name_", "_missing_", "_generate_next_value_", "_ignore_"}
    | {"_typeshed"}
)
ATTRIBUTE_FUNCTIONS = frozenset({"getattr", "setattr", "hasattr", "delattr"})
# Undocumented parts of the libraries that carry no "_": also only in compat modules.
UNDOCUMENTED = frozenset(
    {"handle_message_parameters", "Route", "DEFAULT_GATEWAY", "get_bot_gateway"}
    | {"wss_uri", "AsyncStream"}
)


# -- helpers -------------------------------------------------------------------------------


def installed(module: ModuleType) -> str:
    return importlib.metadata.version(module.DISTRIBUTION)


def broken(module: ModuleType, what: str) -> str:
    """The failure message: the library, its installed version, the compat module."""
    return (
        f"{module.DISTRIBUTION} {installed(module)} no longer fits {module.__name__}"
        f" (written against {module.WRITTEN_AGAINST}): {what}"
    )


def expect(ok: object, module: ModuleType, what: str) -> None:
    if not ok:
        pytest.fail(broken(module, what), pytrace=False)


def parameters(module: ModuleType, fn: Any, *names: str) -> None:
    """``fn`` takes every one of ``names``."""
    expect(callable(fn), module, f"{fn!r} is not callable")
    signature = inspect.signature(fn)
    for name in names:
        expect(
            name in signature.parameters,
            module,
            f"{fn.__qualname__} has no parameter {name!r} (it has {list(signature.parameters)})",
        )


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    """requirements.txt's ``name==version`` lines, by canonical name."""
    found: dict[str, str] = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.match(r"\s*([A-Za-z0-9_.\-]+)==([^\s;#]+)", line)
        if match:
            found[canonical(match[1])] = match[2]
    return found


def compat_paths() -> list[Path]:
    return sorted(
        path
        for package in OWN_PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if path.name == "compat.py" or path.name.endswith("_compat.py")
    )


def module_of(path: Path) -> ModuleType:
    dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return importlib.import_module(dotted)


# -- every compat module -------------------------------------------------------------------


def test_the_compat_modules_are_found() -> None:
    """The checks below cover what ``compat_paths`` finds: it must find these."""
    names = {module_of(path).__name__ for path in compat_paths()}
    known = {"adapters.discord.compat", "bot.openai_compat", "bot.tiktoken_compat"}
    assert known <= names


@pytest.mark.parametrize("path", compat_paths(), ids=lambda p: str(p.relative_to(ROOT)))
def test_each_compat_module_was_written_against_the_pinned_version(path: Path) -> None:
    module = module_of(path)
    pinned = pins().get(canonical(module.DISTRIBUTION))
    assert pinned is not None, f"{module.DISTRIBUTION} is not pinned in requirements.txt"
    assert module.WRITTEN_AGAINST == pinned, (
        f"requirements.txt pins {module.DISTRIBUTION}=={pinned} (installed:"
        f" {installed(module)}), but {module.__name__} was written against"
        f" {module.WRITTEN_AGAINST}: run tests/test_compat.py against the new version,"
        " fix what it reports, then update WRITTEN_AGAINST"
    )


# -- openai (bot/openai_compat.py) ---------------------------------------------------------


def test_the_sdks_post_still_takes_what_we_pass() -> None:
    m = openai_compat
    parameters(
        m, openai.AsyncOpenAI.post, "path", "cast_to", "content", "options", "stream", "stream_cls"
    )
    expect(hasattr(openai, "AsyncStream"), m, "openai.AsyncStream is gone")
    expect(hasattr(openai, "Timeout"), m, "openai.Timeout is gone")


async def test_post_stream_sends_the_bytes_and_hands_back_the_unread_response(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    m = openai_compat
    body = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}'
    url = str(openai_client.base_url).rstrip("/") + "/chat/completions"
    response = await m.post_stream(openai_client, url, body, openai.Timeout(7.0, read=3.0))
    try:
        expect(isinstance(response, httpx2.Response), m, f"post gave {type(response)}")
        expect(not response.is_stream_consumed, m, "the response body was already read")
        timeout = response.request.extensions.get("timeout", {})
        expect(timeout.get("read") == 3.0, m, f"the timeout option was not applied: {timeout}")
        text = await response.aread()
    finally:
        await response.aclose()
    expect(text.rstrip().endswith(b"data: [DONE]"), m, f"the stream read as {text[-60:]!r}")
    sent = fake_openai.requests[-1]
    expect(
        sent.json
        == {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        m,
        f"the body arrived as {sent.json!r}",
    )
    auth = sent.headers.get("Authorization")
    expect(auth == f"Bearer {FAKE_API_KEY}", m, "the API key was not sent as a bearer token")


async def test_post_stream_raises_the_sdks_error_for_a_failed_status(
    fake_openai: FakeOpenAI, openai_client: openai.AsyncOpenAI
) -> None:
    fake_openai.script(server_error(503))
    url = str(openai_client.base_url).rstrip("/") + "/chat/completions"
    with pytest.raises(openai.APIStatusError) as caught:
        await openai_compat.post_stream(openai_client, url, b"{}", openai.Timeout(5.0))
    assert caught.value.status_code == 503


# -- tiktoken (bot/tiktoken_compat.py) -----------------------------------------------------


def test_dropping_the_python_ranks_changes_no_count() -> None:
    m = tiktoken_compat
    ranks = {bytes([i]): i for i in range(256)} | {b"ab": 256, b"abab": 257}
    encoding = tiktoken.Encoding(
        "tiny", pat_str=r"\S+|\s+", mergeable_ranks=ranks, special_tokens={}
    )
    text = "abab ab ba"
    before = encoding.encode(text)
    expect(
        getattr(encoding, m.RANKS_ATTRIBUTE, None) == ranks,
        m,
        f"Encoding.{m.RANKS_ATTRIBUTE} no longer holds the ranks it was built from",
    )
    expect(m.drop_python_ranks(encoding), m, "there was nothing to drop")
    expect(getattr(encoding, m.RANKS_ATTRIBUTE) == {}, m, "the ranks are still held")
    expect(encoding.encode(text) == before, m, "counts changed once the ranks were dropped")
    expect(encoding.decode(before) == text, m, "decoding changed once the ranks were dropped")


def test_an_encoding_without_python_ranks_is_left_alone() -> None:
    class Bare:
        pass

    bare = Bare()
    assert tiktoken_compat.drop_python_ranks(bare) is False
    assert not hasattr(bare, tiktoken_compat.RANKS_ATTRIBUTE)


# -- discord.py (adapters/discord/compat.py) -----------------------------------------------


def test_discord_internals_still_have_the_shape_used() -> None:
    m = discord_compat
    parameters(
        m,
        discord.http.handle_message_parameters,
        "content",
        "allowed_mentions",
        "previous_allowed_mentions",
        "message_reference",
        "mention_author",
    )
    parameters(m, discord.http.HTTPClient.send_message, "channel_id", "params")
    parameters(m, discord.http.HTTPClient.edit_message, "channel_id", "message_id", "params")
    parameters(m, discord.http.HTTPClient.get_bot_gateway)
    expect(isinstance(discord.http.Route.BASE, str), m, "Route.BASE is not a str")
    gateway = discord.gateway.DiscordWebSocket
    expect(isinstance(gateway.DEFAULT_GATEWAY, yarl.URL), m, "DEFAULT_GATEWAY is not a URL")
    parameters(m, gateway.from_client, "gateway")
    expect(
        inspect.signature(gateway.from_client).parameters["gateway"].default is None,
        m,
        "from_client no longer falls back to DEFAULT_GATEWAY",
    )


def test_handle_message_parameters_still_builds_the_payload() -> None:
    m = discord_compat
    reference = {"message_id": 5, "channel_id": 7, "fail_if_not_exists": False}
    with discord.http.handle_message_parameters(
        content="hi",
        allowed_mentions=discord.AllowedMentions.none(),
        previous_allowed_mentions=None,
        message_reference=reference,  # type: ignore[arg-type]  # the TypedDict, loosely
        mention_author=False,
    ) as params:
        payload = params.payload
    expect(isinstance(payload, dict), m, f"the payload is a {type(payload)}")
    assert payload is not None
    expect(payload.get("content") == "hi", m, f"content missing: {payload}")
    expect(payload.get("message_reference") == reference, m, f"reference missing: {payload}")
    mentions = payload.get("allowed_mentions", {})
    expect(
        mentions.get("parse") == [] and mentions.get("replied_user") is False,
        m,
        f"allowed_mentions is {mentions}",
    )


async def test_rest_and_gateway_can_be_pointed_elsewhere_and_messages_written(
    no_proxy_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = discord_compat
    # Restored after the test: both are process-wide.
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
    gateway = discord.gateway.DiscordWebSocket
    monkeypatch.setattr(gateway, "DEFAULT_GATEWAY", gateway.DEFAULT_GATEWAY)
    async with FakeDiscord() as fake:
        fake.add_guild(guild("10", "g", owner_id="20", channels=[text_channel("30", "general")]))
        question = fake.user_message("30", user("20", "alice"), "hello?")
        m.point_rest_at(fake.api_base + "/")
        client = discord.Client(intents=discord.Intents.none())
        try:
            await client.login(fake.token)
            await m.use_gateway_of(client)
            expect(
                gateway.DEFAULT_GATEWAY == yarl.URL(fake.gateway_url),
                m,
                f"the gateway is {gateway.DEFAULT_GATEWAY}",
            )
            reference = {"message_id": int(question["id"]), "channel_id": 30}
            sent = await m.send_message(
                client,
                30,
                "first",
                allowed_mentions=discord.AllowedMentions.none(),
                reference=reference,  # type: ignore[arg-type]  # the TypedDict, loosely
            )
            await m.edit_message(
                client, 30, int(sent), "second", allowed_mentions=discord.AllowedMentions.none()
            )
        finally:
            await client.close()
    post, edit = (
        fake.calls_to("POST", r"/channels/30/messages$")[0],
        fake.calls_to("PATCH", rf"/channels/30/messages/{sent}$")[0],
    )
    expect(fake.messages[sent]["content"] == "second", m, f"the message is {fake.messages[sent]}")
    expect(
        post.json["message_reference"]["message_id"] == int(question["id"]),
        m,
        f"the post was not a reply: {post.json}",
    )
    expect(
        post.json["allowed_mentions"] == {"parse": [], "replied_user": False},
        m,
        f"the post may ping: {post.json['allowed_mentions']}",
    )
    expect(edit.json["allowed_mentions"]["parse"] == [], m, f"the edit may ping: {edit.json}")


# -- no private names of other packages outside the compat modules --------------------------


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in PUBLIC_UNDERSCORE


def _own_private_names(package: Path) -> set[str]:
    """Every ``_name`` a package defines itself (functions, classes, variables, attributes)."""
    names: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id in ("self", "cls")
            ):
                names.add(node.attr)
            elif isinstance(node, ast.alias) and node.asname:
                names.add(node.asname)
    return {name for name in names if _is_private(name)}


def _foreign_modules(tree: ast.AST) -> set[str]:
    """Local names bound to modules of other packages by ``import x`` / ``import x as y``."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] not in OWN_ROOTS:
                    bound.add(alias.asname or alias.name.split(".")[0])
    return bound


def _root(node: ast.expr) -> ast.expr:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node


def foreign_private_uses(source: str, own: set[str]) -> list[str]:
    """Each use of another package's ``_name`` in ``source``, as "line: code"."""
    tree = ast.parse(source)
    modules = _foreign_modules(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        hit: str | None = None
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.split(".")[0] not in OWN_ROOTS]
            hit = next((n for n in names if any(map(_is_private, n.split(".")))), None)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] not in OWN_ROOTS | {"__future__"}:
                parts = node.module.split(".") + [a.name for a in node.names]
                hit = node.module if any(map(_is_private, parts)) else None
        elif isinstance(node, ast.Attribute) and _is_private(node.attr):
            root = _root(node)
            if isinstance(root, ast.Name) and root.id in modules:
                hit = ast.unparse(node)
            elif not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                hit = None if node.attr in own else ast.unparse(node)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ATTRIBUTE_FUNCTIONS
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _is_private(node.args[1].value)
            and node.args[1].value not in own
        ):
            hit = ast.unparse(node)
        if hit is not None:
            found.append(f"{getattr(node, 'lineno', 0)}: {hit}")
    return found


def test_no_private_names_of_other_packages_outside_the_compat_modules() -> None:
    allowed = set(compat_paths())
    found: list[str] = []
    for package in OWN_PACKAGES:
        own = _own_private_names(ROOT / package)
        for path in sorted((ROOT / package).rglob("*.py")):
            if path not in allowed:
                rel = path.relative_to(ROOT)
                found += [f"{rel}:{use}" for use in foreign_private_uses(path.read_text(), own)]
    assert found == [], "private names of other packages, outside a compat module:\n" + "\n".join(
        found
    )


def undocumented_uses(source: str) -> list[str]:
    """Each use of a name in ``UNDOCUMENTED`` in ``source``, as "line: name"."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Attribute):
            names = [node.attr]
        elif isinstance(node, ast.Name):
            names = [node.id]
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [part for alias in node.names for part in alias.name.split(".")]
        found += [f"{getattr(node, 'lineno', 0)}: {name}" for name in names if name in UNDOCUMENTED]
    return found


def test_undocumented_library_parts_only_in_the_compat_modules() -> None:
    allowed = set(compat_paths())
    found = [
        f"{path.relative_to(ROOT)}:{use}"
        for package in OWN_PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if path not in allowed
        for use in undocumented_uses(path.read_text())
    ]
    assert found == [], "undocumented library parts, outside a compat module:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("source", "caught"),
    [
        ("async def f(db):\n    return await db._execute(g, db._conn)", True),
        ("import discord.http\ndiscord.http._set_api_version(9)", True),
        ("from openai._types import RequestOptions", True),
        ("from discord.http import _set_api_version", True),
        ("import tiktoken._educational", True),
        ("setattr(encoding, '_mergeable_ranks', {})", True),
        ("class A:\n    def f(self):\n        return self._x", False),
        ("def f(other):\n    return other._own_thing", False),
        ("def f(row):\n    return row._replace(a=1)", False),
        ("from bot._private import x\nfrom . import _y", False),
    ],
)
def test_the_private_name_check_catches_what_it_should(source: str, caught: bool) -> None:
    assert bool(foreign_private_uses(source, own={"_own_thing"})) is caught


# -- slack_sdk: no internals left -----------------------------------------------------------


async def test_the_slack_socket_client_opens_with_a_url_of_its_own(
    no_proxy_env: None, memory_core: Core
) -> None:
    """Start checks the app token with apps.connections.open, then lets the socket
    client ask for its own URL (its public way) instead of handing it ours."""
    async with FakeSlack() as fake:
        config = SlackConfig(
            bot_token=fake.bot_token,
            app_token=fake.app_token,
            signing_secret=fake.signing_secret,
        )
        adapter = SlackAdapter(config, memory_core, api_base_url=fake.api_url)
        await adapter.start()
        try:
            opened = len(fake.calls_to("apps.connections.open"))
            connections = fake.connections
        finally:
            await adapter.stop()
    assert (opened, connections) == (2, 1)
