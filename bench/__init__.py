"""Benchmarks: ``python -m bench [names...] [--quick] [--json]``.

To add one, write ``bench/bench_<name>.py`` exposing ``BENCHMARK`` (a
:class:`bench.common.Benchmark`) and add it to ``MODULES`` below. ``python -m bench``
alone runs all but ``ON_REQUEST`` (those need a PostgreSQL server).
"""

from __future__ import annotations

import importlib

from .common import Benchmark

# Run order of `python -m bench`; a name maps to the module holding its BENCHMARK.
MODULES: dict[str, str] = {
    "core": "bench.bench_core",
    "history": "bench.bench_history",
    "discord": "bench.bench_discord",
    "slack": "bench.bench_slack",
    "floods": "bench.bench_floods",
    "bounds": "bench.bench_bounds",
    "slack_limits": "bench.bench_slack_limits",
    "postgres": "bench.bench_postgres",
    "usage": "bench.bench_usage",
}
# Run only when named (``python -m bench postgres``): they need a server of their own.
ON_REQUEST: tuple[str, ...] = ("postgres",)
DEFAULT_RUN: tuple[str, ...] = tuple(name for name in MODULES if name not in ON_REQUEST)


def load(name: str) -> Benchmark:
    """The benchmark registered as ``name`` (imported on demand)."""
    if name not in MODULES:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(MODULES)}")
    benchmark = importlib.import_module(MODULES[name]).BENCHMARK
    if not isinstance(benchmark, Benchmark) or benchmark.name != name:
        raise TypeError(f"{MODULES[name]}.BENCHMARK is not a Benchmark named {name!r}")
    return benchmark
