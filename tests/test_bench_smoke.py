"""The benchmark harness works: every benchmark runs (quick) and reports its keys.

Only shapes and types are checked here, never timings: numbers belong in
PERFORMANCE.md, not in assertions.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

import bench
from bench import DEFAULT_RUN, MODULES, ON_REQUEST, load
from bench.__main__ import main, parse_args
from bench.bench_platform_common import (
    FAST_MODEL,
    LONG_ANSWER,
    LONG_CHARS,
    SHORT_ANSWER,
    Model,
    Tracker,
    TwoSpeedModel,
    long_answer,
    max_in_window,
    per_channel_max,
    question,
)
from bench.common import (
    REPO_ROOT,
    Benchmark,
    Report,
    Results,
    RunOptions,
    Target,
    format_table,
    loopback_env,
    machine_info,
    percentile,
    to_json,
)
from fakes.fake_openai import Behaviour
from tests.postgres_support import ADMIN_URL, admin_connection

QUICK_RUN_TIMEOUT_S = 200.0  # bounds added ~20 s


async def _dummy_run(opts: RunOptions) -> Results:
    return {"dummy_ratio": 0.5 if opts.quick else 1.0, "dummy_count": 3, "dummy_note": "ok"}


# Registered under "dummy" by the fixture below, to drive `python -m bench`'s main().
BENCHMARK = Benchmark(
    name="dummy",
    title="A stand-in",
    run=_dummy_run,
    targets=(Target("dummy_ratio", ">=", 0.9), Target("dummy_count", "<", 10)),
    keys=("dummy_ratio", "dummy_count"),
)


@pytest.fixture
def dummy_registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(bench.MODULES, "dummy", __name__)
    saved = dict(os.environ)  # main() drops proxy variables from the environment
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`python -m bench --quick --json` once, in a fresh process, as a user would run it."""
    cache = tmp_path_factory.mktemp("bench-cache")
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", "--cache-dir", str(cache)],
        cwd=REPO_ROOT,
        env=loopback_env(),
        capture_output=True,
        text=True,
        timeout=QUICK_RUN_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)  # exactly one JSON object on stdout
    assert isinstance(out, dict)
    return out


@pytest.mark.parametrize("name", list(DEFAULT_RUN))
def test_quick_run_reports_every_key_of_every_benchmark(
    quick_run: dict[str, Any], name: str
) -> None:
    assert_reports_its_keys(quick_run, name)


def assert_reports_its_keys(run: dict[str, Any], name: str) -> None:
    """Every key ``name`` declares is a finite number >= 0; its targets are judged."""
    benchmark = load(name)
    assert benchmark.keys, f"{name} declares no keys"
    for key in benchmark.keys:
        value = run.get(key)
        assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
        assert math.isfinite(value) and value >= 0, (key, value)
    for target in benchmark.targets:
        assert target.key in benchmark.keys
        verdict = run["targets"]
        assert isinstance(verdict, dict)
        assert verdict[target.key]["target"] == str(target)
        assert isinstance(verdict[target.key]["met"], bool)


def test_quick_run_did_real_work_without_failures(quick_run: dict[str, Any]) -> None:
    assert quick_run["core_errors"] == quick_run["bare_errors"] == quick_run["plain_errors"] == 0
    assert quick_run["rss_failures"] == 0
    assert quick_run["history_turns_per_load"] == 100  # 100,000 messages / 1,000 conversations
    positive = ("overhead_ratio", "core_vs_plain_ratio", "core_msgs_per_s", "plain_msgs_per_s")
    for key in (*positive, "rss_mb"):
        value = quick_run[key]
        assert isinstance(value, int | float) and value > 0, key
    assert quick_run["quick"] is True
    assert set(quick_run["benchmarks"]) == set(DEFAULT_RUN)
    machine = quick_run["machine"]
    assert isinstance(machine, dict)
    assert machine["cores"] >= 1 and machine["ram_gb"] > 0 and machine["python"]


def test_quick_bounds_run_served_long_messages_and_held_a_commit(
    quick_run: dict[str, Any],
) -> None:
    assert quick_run["rss_long_messages_failures"] == 0
    assert quick_run["rss_long_messages_count"] == 160
    assert quick_run["loop_stall_failures"] == 0
    assert quick_run["loop_stall_commits_held"] >= 1  # the disk really stalled a write
    assert quick_run["loop_stall_answers_after"] > 0  # and everything went on after it


async def test_the_postgres_benchmark_runs_when_named_and_reports_its_keys(
    tmp_path: Path,
) -> None:
    """``python -m bench postgres --quick --json`` against the test server (not in the
    default run: it needs one; tests/postgres_support.py skips or fails without it)."""
    await (await admin_connection()).close()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench",
        "postgres",
        "--quick",
        "--json",
        cwd=REPO_ROOT,
        env=loopback_env({**os.environ, "TEST_DATABASE_URL": ADMIN_URL}),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), QUICK_RUN_TIMEOUT_S)
    assert proc.returncode == 0, err.decode()[-3000:]
    run = json.loads(out)
    assert list(run["benchmarks"]) == list(ON_REQUEST)
    assert_reports_its_keys(run, "postgres")
    assert run["pg_history_messages"] == 100_000 and run["pg_answer_failures"] == 0
    # Real bot processes answered, one and two of them, and the survivor answered
    # every question the killed one held (quick: instances.failover_s at its least).
    assert run["instances_answer_errors"] == 0
    assert run["one_instance_answers_per_s"] > 0 and run["two_instances_answers_per_s"] > 0
    assert run["failover_config_s"] == 10
    assert run["failover_held"] >= 1 and run["failover_answered"] == run["failover_held"]
    assert 0 < run["failover_s"] <= run["failover_all_s"]


def test_main_prints_a_table_with_targets_and_verdicts(
    dummy_registered: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dummy", "--quick"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("$ python -m bench dummy --quick")
    assert "machine: " in out
    ratio_line = next(line for line in out.splitlines() if "dummy_ratio" in line)
    assert "0.500" in ratio_line and ">= 0.9" in ratio_line and ratio_line.endswith("NO")
    count_line = next(line for line in out.splitlines() if "dummy_count" in line)
    assert count_line.endswith("yes")
    note_line = next(line for line in out.splitlines() if "dummy_note" in line)
    assert note_line.split()[-1] == "ok"  # no target: no verdict


def test_main_json_is_one_object_with_all_keys(
    dummy_registered: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dummy", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dummy_ratio"] == 1.0 and out["dummy_count"] == 3 and out["dummy_note"] == "ok"
    assert out["targets"]["dummy_ratio"] == {"target": ">= 0.9", "met": True}
    assert out["quick"] is False and "dummy" in out["benchmarks"]


def test_subset_selection_and_unknown_names() -> None:
    assert parse_args(["history", "core"]).names == ["history", "core"]
    assert parse_args([]).names == []
    with pytest.raises(SystemExit):
        parse_args(["nonsense"])
    with pytest.raises(KeyError):
        load("nonsense")


def test_two_benchmarks_may_not_report_the_same_key() -> None:
    report = Report(BENCHMARK, {"dummy_ratio": 1.0}, 0.1)
    with pytest.raises(ValueError, match="dummy_ratio"):
        to_json([report, report], machine_info(), False, "python -m bench")
    table = format_table([report], machine_info(), "python -m bench")
    assert "dummy_ratio" in table


def test_percentile_interpolates() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert math.isnan(percentile([], 50))


def test_targets_judge_numbers_only() -> None:
    assert Target("k", ">=", 0.9).met(0.9) is True
    assert Target("k", "<", 2.0).met(2.0) is False
    assert Target("k", "<", 2.0).met("cached") is None
    assert str(Target("k", "<", 150.0)) == "< 150"


def test_every_registered_module_exists() -> None:
    for name, module in MODULES.items():
        assert (REPO_ROOT / Path(*module.split("."))).with_suffix(".py").is_file(), name


# -- the platform benchmarks (bench_discord, bench_slack) ----------------------------

PLATFORM_PREFIXES = ("discord", "slack")


@pytest.mark.parametrize("platform", PLATFORM_PREFIXES)
def test_platform_quick_run_answered_everything(quick_run: dict[str, Any], platform: str) -> None:
    """Every phase got its answers through the real client library, none timed out."""
    for phase in (platform, f"{platform}_light", f"{platform}_fair"):
        answers, errors = quick_run[f"{phase}_answers"], quick_run[f"{phase}_errors"]
        assert isinstance(answers, int) and answers > 0, (phase, answers)
        assert errors == 0, (phase, errors)
    fair_channels = quick_run[f"{platform}_fair_channels"]
    assert quick_run[f"{platform}_fair_answers"] == fair_channels  # one round each, quick
    for size in ("short", "long"):
        summary = quick_run[f"{platform}_{size}_calls"]
        assert isinstance(summary, str) and summary != "none", (size, summary)
        assert isinstance(quick_run[f"{platform}_{size}_posts"], float)
        assert quick_run[f"{platform}_{size}_posts"] >= 1  # an answer was posted
    # Percentiles of one set of answers, and the first text before the final one.
    assert quick_run[f"{platform}_p50_ms"] <= quick_run[f"{platform}_p99_ms"]
    first, final = quick_run[f"{platform}_first_text_p50_ms"], quick_run[f"{platform}_p50_ms"]
    assert first <= final


def test_llmcord_workload_ran_both_ways(quick_run: dict[str, Any]) -> None:
    for prefix in ("llmcord_workload", "llmcord_workload_nowindow"):
        assert quick_run[f"{prefix}_answers"] > 0
        assert quick_run[f"{prefix}_errors"] == 0
        assert quick_run[f"{prefix}_rss_mb"] > 0
    assert quick_run["llmcord_workload_window_ceiling_answers_per_s"] == 32.0


def test_long_answer_is_exact_and_ends_visibly() -> None:
    assert len(LONG_ANSWER) == LONG_CHARS == 5000
    assert not LONG_ANSWER[-1].isspace() and "\n\n" in LONG_ANSWER
    assert len(long_answer(123)) == 123


def test_max_in_window_counts_a_sliding_window() -> None:
    assert max_in_window([], 5.0) == 0
    assert max_in_window([0.0, 1.0, 2.0, 4.9, 5.0, 9.0], 5.0) == 4  # [0, 4.9]; 5.0 starts anew
    assert max_in_window([3.0, 0.0, 1.0], 1.0) == 1  # unsorted input
    assert per_channel_max({"a": [0.0, 0.5], "b": [0.0, 0.1, 0.2]}, 1.0) == 3


async def test_pending_answer_is_final_only_with_the_whole_text() -> None:
    tracker = Tracker()
    short = tracker.open("q1", SHORT_ANSWER, sent_at=10.0)
    tracker.seen("q1", "   ", 10.01)  # blank: not text yet
    tracker.seen("q1", SHORT_ANSWER[:5], 10.05)
    tracker.seen("q1", SHORT_ANSWER + " more", 10.08)  # not the answer
    assert short.first_text == pytest.approx(0.05) and not short.done.done()
    tracker.seen("q1", SHORT_ANSWER, 10.1)
    assert short.done.done() and short.latency == pytest.approx(0.1)
    tracker.seen("q1", SHORT_ANSWER, 10.5)  # forgotten once final: no change
    assert short.latency == pytest.approx(0.1)

    long = tracker.open("q2", LONG_ANSWER, sent_at=0.0)
    tracker.seen("q2", LONG_ANSWER[:1990], 1.0)  # the first of three messages
    assert not long.done.done()
    tracker.seen("q2", LONG_ANSWER[-700:], 2.0)  # the last message, complete
    assert long.done.done() and long.latency == 2.0


async def test_two_speed_model_answers_long_only_when_asked(no_proxy_env: None) -> None:
    """The fake model behind the platform benchmarks, through the real SDK."""
    quick_long = Model(LONG_ANSWER, ttft_ms=0.0, chunks=10, chunk_interval_ms=0.0)
    default = Behaviour(text=FAST_MODEL.text)
    async with TwoSpeedModel(long=quick_long, default=default, record=False) as fake:
        client = openai.AsyncOpenAI(api_key="sk-test", base_url=fake.base_url + "/v1")
        try:
            answers = []
            for text in (question(1, SHORT_ANSWER), question(2, LONG_ANSWER)):
                stream = await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": text}], stream=True
                )
                parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
                answers.append("".join(parts))
        finally:
            await client.close()
    assert answers == [SHORT_ANSWER, LONG_ANSWER]
    with pytest.raises(ValueError):
        question(3, "something else")
