"""What a user sees when a URL holds a secret or the storage URL is unusable:
real ``python -m bot`` subprocesses, one line on stderr, exit 2, nothing leaked."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.redact import install_log_redaction
from tests.support import bot_env, run_bot

PASSWORD = "LEAK-PASSWORD-7781"
AT_PASSWORD = "LEAK@PW-7783"  # an "@" in it, not percent-encoded
KEY = "LEAK-KEY-7782"
RACE_RUNS = 5
SECRET_BASE_URL = f"https://user:{PASSWORD}@models.example/v1?api-key={KEY}&region=eu"


async def test_check_redacts_the_key_in_base_url(tmp_path: Path) -> None:
    env = bot_env(tmp_path, OPENAI_BASE_URL=f"https://models.example/v1?api-key={KEY}&region=eu")
    code, out, err = await run_bot(["check"], env)
    assert code == 0, err
    assert "base_url: https://models.example/v1?api-key=***&region=eu" in out
    assert KEY not in out + err


@pytest.mark.parametrize(
    "url",
    [
        SECRET_BASE_URL,
        f"http://alice:{PASSWORD}/x@127.0.0.1:9/v1",  # a "/" in the password, not encoded
        f"http:/alice:{PASSWORD}@127.0.0.1:9/v1",  # a mistyped scheme
    ],
)
async def test_a_base_url_with_a_password_is_refused_without_showing_it(
    tmp_path: Path, url: str
) -> None:
    """The SDK's HTTP client cannot send both the key and URL credentials: every
    answer would fail, so the URL is refused at start."""
    code, out, err = await run_bot(["check"], bot_env(tmp_path, OPENAI_BASE_URL=url))
    assert code == 2
    [line] = err.splitlines()
    assert line.startswith("error: config: openai.base_url (OPENAI_BASE_URL): ")
    assert PASSWORD not in out + err


@pytest.mark.parametrize("command", ["check", "console"])
@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://bob:{PASSWORD}/x@127.0.0.1:1/db",  # "/", "?", "#" not percent-encoded
        f"postgresql://bob:{PASSWORD}?x@127.0.0.1:1/db",
        f"postgresql://bob:{PASSWORD}#x@127.0.0.1:1/db",
        f"postgresql//bob:{PASSWORD}@127.0.0.1:1/db",  # mistyped schemes
        f"postgresql:/bob:{PASSWORD}@127.0.0.1:1/db",
    ],
)
async def test_a_database_url_with_a_misread_password_is_one_line_without_it(
    tmp_path: Path, command: str, url: str
) -> None:
    code, out, err = await run_bot([command], bot_env(tmp_path, DATABASE_URL=url))
    assert code == 2
    [line] = err.splitlines()
    assert line.startswith("error: config: storage.url (DATABASE_URL): ")
    assert PASSWORD not in out + err and PASSWORD[:8] not in out + err


@pytest.mark.parametrize("command", ["check", "console"])
@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (
            f"postgresql://bob:{AT_PASSWORD}@127.0.0.1:1/db",
            "'postgresql://***@127.0.0.1:1/db': its user or password holds an @ that is "
            "not percent-encoded; write it as %40",
        ),
        (
            f"postgresql://bob:{PASSWORD}@127.0.0.1:99999/db",
            "'postgresql://***@127.0.0.1:99999/db': port '99999' is not a number from 1 to 65535",
        ),
        (
            f"postgresql://bob:{PASSWORD}@127.0.0.1:5432x/db",
            "'postgresql://***@127.0.0.1:5432x/db': port '5432x' is not a number from 1 to 65535",
        ),
        (f"postgresql://bob:{PASSWORD}@127.0.0.1:1", "'postgresql://***@127.0.0.1:1' names no "),
        (f"postgresql://bob:{PASSWORD}@127.0.0.1:1/", "'postgresql://***@127.0.0.1:1/' names no "),
    ],
    ids=["second-at", "port-too-big", "port-not-a-number", "no-database", "empty-database"],
)
async def test_a_database_url_the_driver_would_misread_is_refused_naming_it(
    tmp_path: Path, command: str, url: str, problem: str
) -> None:
    """Refused before any connection: the driver would look part of the password up
    as a host name, crash on the port, or fill the server's default database."""
    code, out, err = await run_bot([command], bot_env(tmp_path, DATABASE_URL=url))
    assert code == 2, err
    [line] = err.splitlines()
    assert line.startswith(f"error: config: storage.url (DATABASE_URL): {problem}")
    assert not any(part in out + err for part in AT_PASSWORD.split("@"))
    assert PASSWORD not in out + err


@pytest.mark.parametrize("command", ["check", "console"])
async def test_unsupported_database_url_is_one_line_without_its_password(
    tmp_path: Path, command: str
) -> None:
    env = bot_env(tmp_path, DATABASE_URL=f"mysql://bot:{PASSWORD}@db.internal/bot")
    code, out, err = await run_bot([command], env)
    assert code == 2
    assert err.splitlines() == [
        "error: config: storage.url (DATABASE_URL): unsupported URL "
        "'mysql://***@db.internal/bot'; use one of: sqlite:///relative/path.db, "
        "sqlite:////absolute/path.db, sqlite:///:memory:, memory://, "
        "postgresql://host:5432/database"
    ]
    assert PASSWORD not in out + err


def _directory(tmp_path: Path) -> Path:
    (tmp_path / "a-folder").mkdir()
    return tmp_path / "a-folder"


def _corrupt(tmp_path: Path) -> Path:
    path = tmp_path / "corrupt.db"
    path.write_bytes(os.urandom(8192))
    return path


def _under_a_file(tmp_path: Path) -> Path:
    (tmp_path / "plain-file").write_text("not a folder")
    return tmp_path / "plain-file" / "bot.db"


def _unwritable(_tmp_path: Path) -> Path:
    return Path("/proc/bot.db")  # no one, root included, may create a file there


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (_unwritable, "unable to open database file"),
        (_directory, "is a directory"),
        (_corrupt, "is not an SQLite database, or it is damaged"),
        (_under_a_file, "a part of the path is a file, not a folder"),
    ],
)
@pytest.mark.parametrize("command", ["check", "console", "run"])
async def test_unusable_storage_file_is_one_line_and_exit_2(
    tmp_path: Path, command: str, make: Callable[[Path], Path], problem: str
) -> None:
    target = make(tmp_path)
    before = target.read_bytes() if target.is_file() else None
    env = bot_env(tmp_path, DATABASE_URL=f"sqlite:///{target}")
    if command == "run":
        env["DISCORD_BOT_TOKEN"] = "a-token"  # a platform, so run gets as far as the store
    code, out, err = await run_bot([command], env, b"hello\n")
    assert code == 2, err
    (line,) = err.splitlines()  # one line: no traceback, nothing from the writer
    assert line.startswith("error: config: storage.url (DATABASE_URL): ")
    assert problem in line and str(target) in line
    assert "answer:" not in out
    if before is not None:
        assert target.read_bytes() == before  # the damaged file is left as it was


async def test_storage_url_from_the_config_file_names_only_the_key(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"storage:\n  url: sqlite:///{_directory(tmp_path)}\n")
    env = bot_env(tmp_path, BOT_CONFIG=str(config))
    env.pop("DATABASE_URL")
    code, _, err = await run_bot(["check"], env)
    assert code == 2
    assert err.startswith("error: config: storage.url: ") and "DATABASE_URL" not in err


async def test_check_creates_no_database_file(tmp_path: Path) -> None:
    env = bot_env(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/new/bot.db")
    code, _, err = await run_bot(["check"], env)
    assert code == 0, err
    assert not (tmp_path / "new").exists()


def test_log_lines_and_tracebacks_have_their_urls_redacted() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    install_log_redaction(logger)
    try:
        logger.warning("cannot reach %s", SECRET_BASE_URL)
        try:
            raise ConnectionError(f"failed to fetch {SECRET_BASE_URL}")
        except ConnectionError:
            logger.exception("a library raised")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert PASSWORD not in text and KEY not in text
    assert text.count("https://***@models.example/v1?api-key=***&region=eu") == 2
    assert "ConnectionError" in text  # the traceback is still there, only redacted


async def test_a_failed_open_leaves_no_traceback_from_the_writer(tmp_path: Path) -> None:
    """A writer left behind by a failed open would print at exit, in some runs only (an
    earlier writer thread hit the closed event loop about half the time): run several
    times so that would show."""
    env = bot_env(tmp_path, DATABASE_URL=f"sqlite:///{_unwritable(tmp_path)}")
    for _ in range(RACE_RUNS):
        code, _, err = await run_bot(["console"], env)
        assert code == 2 and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("var", ["SLACK_API_URL", "DISCORD_API_URL"])
async def test_a_platform_api_url_with_credentials_is_one_line(tmp_path: Path, var: str) -> None:
    env = bot_env(tmp_path, **{var: f"http://user:{PASSWORD}@127.0.0.1:9/api/?token={KEY}"})
    env.update(SLACK_BOT_TOKEN="xoxb-1", SLACK_APP_TOKEN="xapp-1", DISCORD_BOT_TOKEN="d-1")
    code, out, err = await run_bot([], env)
    assert code == 2
    (line,) = err.splitlines()
    assert "api_url" in line and "user:password@" in line
    assert PASSWORD not in out + err and KEY not in out + err
