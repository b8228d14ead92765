"""Model output must not ping anyone in Slack (Discord gets the same from
``AllowedMentions.none()``).

Slack notifies on its mention syntax: ``<!channel>``, ``<!here>``, ``<!everyone>``,
``<!subteam^ID>`` (a user group) and ``<@U123>`` (a person), each optionally with a
``|label``. Every one becomes plain text: a FULLWIDTH COMMERCIAL AT (＠) and a
readable name (the label, else the keyword or ID), e.g. ``<!here>`` → ``＠here``,
``<@U0ALICE|alice>`` → ``＠alice``. Slack reads only the ASCII ``@`` as a mention,
so the text stays readable and pings no one. Bare ``@channel`` / ``@here`` /
``@everyone`` words get the same at sign, in case a client links them. No
replacement is longer than what it replaces, so a part never outgrows its limit.

A streamed answer arrives in pieces, and ``<!chan`` + ``nel>`` would join into a
mention in Slack's message. :func:`split_ready` holds back a tail that may still
become one, until the next piece (or the end) shows what it is.
"""

from __future__ import annotations

import re

SAFE_AT = "\uff20"  # FULLWIDTH COMMERCIAL AT: looks like @, never a mention
SPECIAL = frozenset({"channel", "here", "everyone", "group"})  # group: legacy @channel
SUBTEAM = "subteam^"
# A "<" this far from the end without its ">" is not a mention still being written.
HOLD_MAX_CHARS = 120
BARE_TAIL_CHARS = len("@everyone")  # the longest bare word still being written

_TOKEN = re.compile(r"<([!@])([^<>|\n]*)(?:\|([^<>\n]*))?>")
_BARE = re.compile(r"(?<![\w@])@(channel|here|everyone)\b", re.IGNORECASE)
_OPEN_TAIL = re.compile(r"<[^<>\n]*\Z")
_BARE_TAIL = re.compile(r"(?<![\w@])@[A-Za-z]{0,8}\Z")


def neutralise(text: str) -> str:
    """``text`` with every Slack mention turned into harmless ``＠name`` text."""
    if "<" in text:
        text = _TOKEN.sub(_replace, text)
    if "@" in text:
        text = _BARE.sub(lambda m: SAFE_AT + m.group(1), text)
    return text


def split_ready(text: str) -> tuple[str, str]:
    """``(ready, held)``: ``held`` is a tail that the next piece may turn into a mention."""
    cut = len(text)
    tail = _OPEN_TAIL.search(text, max(0, len(text) - HOLD_MAX_CHARS))
    if tail is not None:
        cut = tail.start()
    bare = _BARE_TAIL.search(text, max(0, len(text) - BARE_TAIL_CHARS))
    if bare is not None:
        cut = min(cut, bare.start())
    return text[:cut], text[cut:]


def _replace(match: re.Match[str]) -> str:
    sigil, target, label = match.group(1), match.group(2), match.group(3)
    name = (label or "").strip().lstrip("@")
    if sigil == "@":
        return SAFE_AT + (name or target)
    if target.lower() in SPECIAL:
        return SAFE_AT + target.lower()
    if target.startswith(SUBTEAM):
        return SAFE_AT + (name or target.removeprefix(SUBTEAM))
    return match.group(0)  # <!date^...>, <!subteam...> lookalikes: no notification
