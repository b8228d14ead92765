"""Cleaning user text before it reaches the model or a command parser."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Zero-width and direction-override characters: invisible, but they break command
# parsing ("!re\u200bset") and can hide text from moderators.
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u202a-\u202e\u2066-\u2069]")
_COMMAND = re.compile(r"^(\w+)(?:\s+(.*))?$", re.DOTALL)


def clean_text(text: str) -> str:
    """Drop control and zero-width characters (keeping newlines and tabs), trim."""
    text = _INVISIBLE.sub("", text)
    text = "".join(
        ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs")
    )
    return text.replace("\r", "").strip()


@dataclass(frozen=True, slots=True)
class Command:
    """A text command such as ``!system be brief``."""

    name: str
    arg: str


def parse_command(text: str, prefix: str) -> Command | None:
    """Return the command in ``text`` if it starts with ``prefix`` and a word."""
    if not prefix or not text.startswith(prefix):
        return None
    match = _COMMAND.match(text[len(prefix) :])
    if match is None:
        return None
    return Command(match.group(1).lower(), (match.group(2) or "").strip())
