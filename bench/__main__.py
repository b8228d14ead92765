"""``python -m bench``: run benchmarks, print a table (or one JSON object with --json)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bot.__main__ import loop_factory

from . import DEFAULT_RUN, MODULES, load
from .common import (
    DEFAULT_CACHE_DIR,
    Report,
    RunOptions,
    format_table,
    machine_info,
    to_json,
    use_loopback_env,
    with_frozen_heap,
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run (default: {', '.join(DEFAULT_RUN)}; also: "
        f"{', '.join(n for n in MODULES if n not in DEFAULT_RUN)}, which needs PostgreSQL)",
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, shorter runs")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE_DIR,
        help=f"where built test databases are kept between runs (default: {DEFAULT_CACHE_DIR})",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in MODULES]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(MODULES)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # one line per request otherwise
    use_loopback_env()
    opts = RunOptions(quick=args.quick, cache_dir=args.cache_dir)
    names = args.names or list(DEFAULT_RUN)
    command = "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:])
    reports = []
    for name in names:
        benchmark = load(name)
        print(f"running {name}: {benchmark.title} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        # What earlier benchmarks left in this process (their fakes run here too) stays
        # out of the collector's full passes, as the bot does with its start-up state.
        gc.collect()
        gc.freeze()
        # The event loop the bot runs on (uvloop where installed), as `python -m bot` does.
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            results = runner.run(with_frozen_heap(benchmark.run(opts)))
        reports.append(Report(benchmark, results, time.perf_counter() - started))
    machine = machine_info()
    if args.json:
        print(to_json(reports, machine, args.quick, command.strip()))
    else:
        print(format_table(reports, machine, command.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
