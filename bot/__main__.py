"""``python -m bot [run|console|check|migrate-store]``: the command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Sequence

try:  # the libraries take a moment to load; Ctrl-C then exits as it does later
    from .app import PLATFORMS, check_storage, describe_instances, migrate_store, serve
    from .config import Config, format_config, load_config
    from .errors import ConfigError, PlatformUnavailable, StartupError
    from .jsonlog import use_json
    from .redact import install_log_redaction
    from .startup import error_line
    from .texts import Texts
    from .tools.wiring import check_tools_servers
except KeyboardInterrupt:
    sys.exit(130)

log = logging.getLogger("bot")

DEFAULT_CONFIG = "config.yaml"
EXIT_USAGE = 2  # bad config, bad token, nothing to run: the user must fix something
EXIT_UNAVAILABLE = 1  # a platform kept failing at start: start again later
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of our output went away
API_KEY_PATH = "openai.api_key"
QUIET_LOGGERS = ("httpx", "httpx2", "httpcore", "openai", "websockets")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bot", description="An OpenAI model in Discord, Slack and the terminal."
    )
    parser.add_argument(
        "command",
        nargs="?",
        default="run",
        choices=("run", "console", "check", "migrate-store"),
        help="run: every configured platform (default); console: chat in the terminal; "
        "check: print the effective config with secrets redacted; "
        "migrate-store: copy one store into another (--from URL --to URL)",
    )
    parser.add_argument("--from", dest="source", help="migrate-store: the store to copy")
    parser.add_argument("--to", dest="target", help="migrate-store: the store to copy into")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="migrate-store: rows per transaction (default 10,000)",
    )
    parser.add_argument("--config", default=os.environ.get("BOT_CONFIG", DEFAULT_CONFIG))
    parser.add_argument(
        "--local",
        action="store_true",
        help="use the bundled SmolLM2 model on a local llama.cpp server (requirements-local.txt)",
    )
    return parser.parse_args(argv)


def setup_logging(cfg: Config, console: bool) -> None:
    # In the terminal chat, logs would interleave with the answer: warnings only.
    level = logging.WARNING if console else getattr(logging, cfg.logging.level, logging.INFO)
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    # While PostgreSQL is down the pool logs a traceback at every reconnect try; the
    # store's own heartbeat already says so, once a minute (bot/failure_log.py).
    logging.getLogger("asyncpg.pool").setLevel(max(level, logging.ERROR))
    install_log_redaction()
    if cfg.logging.format == "json":
        use_json()


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (not on Windows), else asyncio's.

    The bot is one process on one event loop: with uvloop the loop's own work (sockets,
    timers, callbacks) runs in C, less CPU per answer under load (PERFORMANCE.md, "uvloop").
    """
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def print_to_stdout(text: str) -> int:
    """Print ``text``; 0, or ``EXIT_BROKEN_PIPE`` quietly when the reader is gone
    (``python -m bot check | head -1``), as a Unix tool killed by SIGPIPE exits."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # What is still buffered would fail again as Python exits: send it nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "migrate-store":  # needs no config: both URLs are given
            return migrate_store(args.source, args.target, args.batch_size)
        cfg = _load_config(args)
        if args.command == "check":
            check_storage(cfg.storage.url)
            servers = [f"# tools server {line}" for line in check_tools_servers(cfg.tools)]
            instances = asyncio.run(describe_instances(cfg.storage.url))
            return print_to_stdout("\n".join([format_config(cfg), *servers, instances]))
        if args.command == "run" and not (cfg.discord.enabled or cfg.slack.enabled):
            # Say it before anything starts (no database file, no model client).
            raise StartupError(Texts(cfg.language).get("no_platforms"))
        setup_logging(cfg, console=args.command == "console")
        platforms = ("console",) if args.command == "console" else PLATFORMS
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(serve(cfg, platforms, local=args.local))
    except StartupError as exc:
        print(error_line(exc, os.environ), file=sys.stderr)
        return EXIT_UNAVAILABLE if isinstance(exc, PlatformUnavailable) else EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _load_config(args: argparse.Namespace) -> Config:
    """The config. A first ``make run`` with nothing set names the key and the
    platform variables together, not one per attempt."""
    try:
        return load_config(args.config, os.environ, require_api_key=not args.local)
    except ConfigError as exc:
        if args.command != "run" or exc.path != API_KEY_PATH:
            raise
        keyless = load_config(args.config, os.environ, require_api_key=False)
        if keyless.discord.enabled or keyless.slack.enabled:
            raise
        no_platforms = Texts(keyless.language).get("no_platforms")
        raise StartupError(f"{exc}\nerror: {no_platforms}") from exc


if __name__ == "__main__":
    sys.exit(main())
