"""Images, text files and PDFs sent to the bot, end to end.

Real discord.py / slack_bolt against the fake platforms (which serve the files: a
signed CDN URL, url_private with the bot token), the real openai SDK against the
fake model (which records each request's content parts), real files made here.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from slack_sdk.web.async_client import AsyncWebClient

from bot.attachments import AttachmentLimits, DownloadFailed, download
from bot.core import Core
from bot.media_flow import MediaFlow, Vision
from bot.texts import Texts
from bot.tokens import token_counter_for
from bot.types import Attachment, ConversationKey
from fakes.fake_discord import FakeDiscord
from fakes.fake_openai import FakeOpenAI, error, reply
from fakes.fake_slack import FakeSlack
from storage import MemoryStore, SqliteStore
from tests.media_support import image_size, pdf, png
from tests.store_support import user
from tests.support import (
    ALICE,
    DM_CHANNEL,
    GENERAL,
    GUILD,
    CoreFactory,
    answered,
    client,
    deliver,
    discord_texts,
    fake_discord,
    fake_slack,
    history,
    make_sink,
    mention,
    message,
    running_discord,
    running_slack,
)
from tests.support import SLACK_CHANNEL as CHANNEL

__all__ = ["client", "fake_discord", "fake_slack"]  # fixtures, used by name


def last_user(request: dict[str, Any]) -> Any:
    return [m for m in request["messages"] if m["role"] == "user"][-1]["content"]


def image_urls(request: dict[str, Any]) -> list[str]:
    return [
        part["image_url"]["url"]
        for m in request["messages"]
        if isinstance(m["content"], list)
        for part in m["content"]
        if part["type"] == "image_url"
    ]


async def ask_discord(
    fake: FakeDiscord, core: Core, text: str, files: tuple[dict[str, Any], ...], count: int
) -> None:
    content = mention(fake, text) if text else ""
    await fake.send_message(
        GENERAL, ALICE, content, mentions=(fake.bot,), attachments=files, reply_to=None
    )
    await answered(fake, core, GENERAL, count)


async def test_an_image_reaches_the_model_downscaled_and_is_remembered_after_a_restart(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, core_factory: CoreFactory, tmp_path: Path
) -> None:
    path = str(tmp_path / "bot.db")
    store = SqliteStore(path)
    await store.open()
    core = await core_factory(store=store)
    car = fake_discord.add_file(GENERAL, "car.png", png(2400, 1200, (200, 20, 20)), "image/png")
    fake_openai.script(reply("A red car."), reply("It was red."), reply("Still red."))
    async with running_discord(fake_discord, core):
        await ask_discord(fake_discord, core, "what is this?", (car,), 1)
        await ask_discord(fake_discord, core, "what colour was the car?", (), 2)
    await core.close(1.0)
    await store.close()

    reopened = SqliteStore(path)  # a restart: a new process on the same database
    await reopened.open()
    core = await core_factory(store=reopened)
    async with running_discord(fake_discord, core):
        await ask_discord(fake_discord, core, "and the colour again?", (), 3)
    await core.close(1.0)
    await reopened.close()

    first, second, third = fake_openai.chat_requests
    content = last_user(first)
    assert content[0]["type"] == "text" and "what is this?" in content[0]["text"]
    assert "[image car.png" in content[0]["text"]
    (url,) = image_urls(first)
    assert url.startswith("data:image/jpeg;base64,")  # our bytes, not the expiring link
    assert image_size(url) == ("JPEG", (1024, 512))
    assert image_urls(second) == [url] == image_urls(third)
    assert len(fake_discord.file_downloads) == 1  # downloaded once, kept after that
    assert discord_texts(fake_discord, GENERAL)[-1] == "Still red."


async def test_an_image_alone_is_answered_not_called_empty(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, core_factory: CoreFactory
) -> None:
    core = await core_factory()
    photo = fake_discord.add_file(DM_CHANNEL, "cat.jpg", png(64, 64), "image/jpeg")
    fake_openai.script(reply("A small square."))
    async with running_discord(fake_discord, core):
        await fake_discord.send_message(DM_CHANNEL, ALICE, "", attachments=(photo,))
        await answered(fake_discord, core, DM_CHANNEL)
    (request,) = fake_openai.chat_requests
    assert len(image_urls(request)) == 1
    assert discord_texts(fake_discord, DM_CHANNEL) == ["A small square."]


async def test_a_text_file_and_a_pdf_arrive_as_text(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, core_factory: CoreFactory
) -> None:
    core = await core_factory()
    notes = fake_discord.add_file(GENERAL, "notes.md", b"# Plan\nLaunch on Tuesday.\n")
    report = fake_discord.add_file(
        GENERAL, "report.pdf", pdf(["Revenue grew 12 percent", "Costs fell"]), "application/pdf"
    )
    fake_openai.script(reply("Tuesday; revenue up 12%."))
    async with running_discord(fake_discord, core):
        await ask_discord(fake_discord, core, "summarise", (notes, report), 1)
    (request,) = fake_openai.chat_requests
    text = last_user(request)
    assert isinstance(text, str)  # no image: plain text content
    assert "[file notes.md]\n# Plan\nLaunch on Tuesday." in text
    assert "[file report.pdf]\nRevenue grew 12 percent\nCosts fell" in text
    assert discord_texts(fake_discord, GENERAL) == ["Tuesday; revenue up 12%."]


async def test_limits_and_fakes_are_reported_in_the_answer(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, core_factory: CoreFactory
) -> None:
    limits = AttachmentLimits(max_file_bytes=5_000, max_files_per_message=3, max_pdf_pages=1)
    core = await core_factory(attachments=limits)
    files = (
        fake_discord.add_file(GENERAL, "fake.png", b"this is text, not a picture"),
        fake_discord.add_file(GENERAL, "huge.txt", b"x" * 6_000),
        fake_discord.add_file(GENERAL, "long.pdf", pdf(["page one", "page two"])),
        fake_discord.add_file(GENERAL, "extra.txt", b"one too many"),
        fake_discord.add_file(GENERAL, "tool.exe", b"MZ\x90\x00"),
    )
    fake_openai.script(reply("Here is what I could read."))
    async with running_discord(fake_discord, core):
        await ask_discord(fake_discord, core, "read these", files, 1)
    (request,) = fake_openai.chat_requests
    text = last_user(request)
    assert "page one" in text and "page two" not in text
    assert "this is text" not in text and "one too many" not in text
    assert image_urls(request) == []
    (shown,) = discord_texts(fake_discord, GENERAL)
    assert shown.startswith("Here is what I could read.")
    assert "fake.png (it is not really an image)" in shown
    assert "huge.txt (larger than 0.005 MB)" in shown
    assert "long.pdf (only the first 1 pages" in shown
    assert "extra.txt (only 3 files per message)" in shown
    assert "tool.exe (I can't read this kind of file)" in shown
    names = {f["id"]: f["filename"] for f in files}
    downloaded = {names[i] for i in fake_discord.file_downloads}
    assert downloaded == {"fake.png", "long.pdf"}  # never fetched past the size or count
    turns = await history(core.store, ConversationKey("discord", GUILD, GENERAL))
    assert "not really an image" not in turns[-1].content  # notes are not history


async def test_a_model_without_vision_learns_from_the_400_and_says_so(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, core_factory: CoreFactory
) -> None:
    core = await core_factory(model_name="some-local-model")
    refusal = error(
        400, "image input is not supported by this model", type_="invalid_request_error", code=None
    )
    fake_openai.script(refusal, reply("I only see your words."), reply("Still words."))
    picture = fake_discord.add_file(GENERAL, "a.png", png(10, 10), "image/png")
    again = fake_discord.add_file(GENERAL, "b.png", png(10, 10), "image/png")
    async with running_discord(fake_discord, core):
        await ask_discord(fake_discord, core, "look", (picture,), 1)
        await ask_discord(fake_discord, core, "and this", (again,), 2)
    refused, retried, later = fake_openai.chat_requests
    assert image_urls(refused) and not image_urls(retried) and not image_urls(later)
    assert "[image a.png" in last_user(retried)  # the model still hears there was one
    first, second = discord_texts(fake_discord, GENERAL)
    assert first.startswith("I only see your words.")
    assert "can't see images" in first
    assert "can't see images" not in second  # told once per conversation


async def test_vision_off_in_config_sends_text_only(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, core_factory: CoreFactory
) -> None:
    core = await core_factory(vision="off")
    picture = fake_discord.add_file(GENERAL, "a.png", png(10, 10), "image/png")
    fake_openai.script(reply("Words only."))
    async with running_discord(fake_discord, core):
        await ask_discord(fake_discord, core, "look", (picture,), 1)
    (request,) = fake_openai.chat_requests
    assert image_urls(request) == []
    assert "can't see images" in discord_texts(fake_discord, GENERAL)[0]


async def test_slack_files_are_downloaded_with_the_bot_token(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, core_factory: CoreFactory
) -> None:
    core = await core_factory()
    photo = fake_slack.add_file("chart.png", png(300, 200), "image/png")
    memo = fake_slack.add_file("memo.txt", b"The budget is 42 coins.", "text/plain")
    # Some events carry a file without its URLs: they are then asked from files.info.
    csv = fake_slack.add_file("more.csv", b"a,b\n1,2\n", "text/csv")
    bare = {k: csv[k] for k in ("id", "name", "mimetype")} | {"file_access": "check_file_info"}
    body, _ = fake_slack.mention("what do these say?", files=[photo, memo, bare])
    fake_openai.script(reply("42 coins."))
    async with running_slack(fake_slack, core) as adapter:
        await deliver(fake_slack, adapter, core, body)
    (request,) = fake_openai.chat_requests
    content = last_user(request)
    assert "The budget is 42 coins." in content[0]["text"]
    assert "[file more.csv]\na,b\n1,2" in content[0]["text"]
    assert image_size(image_urls(request)[0]) == ("JPEG", (300, 200))
    assert sorted(fake_slack.file_downloads) == sorted(
        (f, True) for f in (photo["id"], memo["id"], bare["id"])
    )
    assert any(call.method == "files.info" for call in fake_slack.calls)
    assert fake_slack.texts(CHANNEL, body["event"]["ts"]) == ["42 coins."]


async def test_a_slack_file_alone_in_a_thread_follow_up_is_read(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, core_factory: CoreFactory
) -> None:
    core = await core_factory()
    fake_openai.script(reply("Send it over."), reply("It says hello."))
    first, _ = fake_slack.mention("I'll send a file")
    root = first["event"]["ts"]
    note = fake_slack.add_file("hello.txt", b"hello from the file", "text/plain")
    follow = fake_slack.event_body(
        fake_slack.message_event("", thread_ts=root, subtype="file_share", files=[note])
    )
    async with running_slack(fake_slack, core) as adapter:
        await deliver(fake_slack, adapter, core, first)
        await deliver(fake_slack, adapter, core, follow)
    assert "hello from the file" in last_user(fake_openai.chat_requests[1])
    assert fake_slack.texts(CHANNEL, root) == ["Send it over.", "It says hello."]


async def test_without_the_token_slack_sends_its_sign_in_page_which_is_refused(
    fake_slack: FakeSlack, fake_openai: FakeOpenAI, core_factory: CoreFactory
) -> None:
    info = fake_slack.add_file("x.txt", b"secret")
    page = await download(info["url_private"], {}, 10_000, 5.0)
    assert page.startswith(b"<!DOCTYPE html>") and b"secret" not in page
    assert fake_slack.file_downloads == [(info["id"], False)]
    # An app without files:read gets the page even with its token: it is refused,
    # not read as the file's text.
    core = await core_factory()
    fake_openai.script(reply("Nothing to read."))
    body, _ = fake_slack.mention("read it", files=[info])
    fake_slack.refuse_files = True
    async with running_slack(fake_slack, core) as adapter:
        await deliver(fake_slack, adapter, core, body)
    assert "x.txt (the download failed)" in fake_slack.texts(CHANNEL, body["event"]["ts"])[0]
    assert "<!DOCTYPE" not in str(fake_openai.chat_requests[0]["messages"])


# -- pieces: hosts the token goes to, a redelivery, which models see ------------------


class CountingSource:
    """A FileSource that serves one text and counts its downloads."""

    def __init__(self) -> None:
        self.fetched = 0

    async def fetch_file(self, attachment: Attachment, max_bytes: int, timeout_s: float) -> bytes:
        self.fetched += 1
        return b"plain text"


async def test_a_message_that_comes_again_after_a_crash_is_not_read_twice() -> None:
    store = MemoryStore()
    await store.open()
    flow = MediaFlow(store, token_counter_for("gpt-4o-mini"), Texts("en"), AttachmentLimits())
    source = CountingSource()
    files = (Attachment("a.txt", "https://x.test/a.txt", 10),)
    msg = dataclasses.replace(message("see file"), attachments=files)
    turn = await store.add_user_turn(msg.key.as_str(), user("m1"))
    assert turn is not None
    vision = flow.vision_for("gpt-4o-mini", "auto")
    for _ in range(2):
        await flow.take(msg.key.as_str(), msg, source, turn, vision)  # type: ignore[arg-type]
    assert source.fetched == 1
    assert len((await store.media_for(msg.key.as_str(), turn, turn))[turn]) == 1


async def test_the_slack_token_goes_to_slack_hosts_only(client: AsyncWebClient) -> None:
    sink = make_sink(client)
    elsewhere = Attachment("a.txt", "https://files.example.com/a.txt", 10, file_id="F1")
    with pytest.raises(DownloadFailed, match="not a Slack file host"):
        await sink.fetch_file(elsewhere, 1000, 5.0)


async def test_discord_downloads_only_from_its_cdn(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, core_factory: CoreFactory
) -> None:
    core = await core_factory()
    fake_openai.script(reply("ok"))
    url = "https://example.com/a.txt"
    outside = {"id": "1", "filename": "a.txt", "size": 3, "url": url, "proxy_url": url}
    async with running_discord(fake_discord, core):
        await ask_discord(fake_discord, core, "read", (outside,), 1)
    assert "a.txt (the download failed)" in discord_texts(fake_discord, GENERAL)[0]


@pytest.mark.parametrize(
    ("model", "sees"),
    [("gpt-4o-mini", True), ("gpt-5", True), ("llava:7b", True), ("o3-mini", False),
     ("gpt-3.5-turbo", False), ("deepseek-r1:8b", False)],
)  # fmt: skip
def test_auto_vision_goes_by_the_model_name(model: str, sees: bool) -> None:
    assert Vision("auto", model).on is sees
    assert Vision("on", model).on and not Vision("off", model).on


async def test_a_message_of_only_unreadable_files_is_told_so_without_asking_the_model(
    fake_discord: FakeDiscord, fake_openai: FakeOpenAI, core_factory: CoreFactory
) -> None:
    core = await core_factory()
    fake = fake_discord.add_file(DM_CHANNEL, "photo.png", b"not an image at all")
    async with running_discord(fake_discord, core):
        await fake_discord.send_message(DM_CHANNEL, ALICE, "", attachments=(fake,))
        await answered(fake_discord, core, DM_CHANNEL)
    assert fake_openai.chat_requests == []
    assert discord_texts(fake_discord, DM_CHANNEL) == [
        "[Not read: photo.png (it is not really an image).]\n"
        "I couldn't read anything in your message."
    ]


@pytest.mark.parametrize("size", [(8000, 6000), (12000, 12000)])
async def test_an_image_claiming_a_huge_canvas_is_refused_before_it_is_decoded(
    fake_discord: FakeDiscord,
    fake_openai: FakeOpenAI,
    core_factory: CoreFactory,
    size: tuple[int, int],
) -> None:
    """48 megapixels in a file of a few kilobytes (a decompression bomb): Pillow alone
    only warns below twice its limit, and would decode it; above twice (144), it
    refuses it itself, which is still "too big", not "damaged"."""
    out = io.BytesIO()
    Image.new("1", size).save(out, format="PNG")
    assert len(out.getvalue()) < 100_000
    core = await core_factory()
    bomb = fake_discord.add_file(DM_CHANNEL, "bomb.png", out.getvalue(), "image/png")
    async with running_discord(fake_discord, core):
        await fake_discord.send_message(DM_CHANNEL, ALICE, "", attachments=(bomb,))
        await answered(fake_discord, core, DM_CHANNEL)
    assert fake_openai.chat_requests == []
    assert discord_texts(fake_discord, DM_CHANNEL) == [
        "[Not read: bomb.png (the picture is over 40 megapixels).]\n"
        "I couldn't read anything in your message."
    ]
