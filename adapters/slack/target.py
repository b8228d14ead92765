"""Where a Slack answer goes, as a string stored with the question.

After a restart the adapter rebuilds its sink from this string alone
(``SlackAdapter.sink_for``): the workspace, channel, thread and the person
asking (the sink's native stream and status line need them), as compact JSON.
Only this module reads or writes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Target:
    """A place to answer in."""

    team: str
    channel: str
    thread_ts: str | None  # None: a top-level reply (a DM outside threads)
    user: str


def encode(target: Target) -> str:
    """The stored form."""
    fields = {"t": target.team, "c": target.channel, "th": target.thread_ts, "u": target.user}
    return json.dumps(fields, separators=(",", ":"))


def decode(text: str) -> Target | None:
    """The target ``encode`` wrote; None for anything else."""
    try:
        fields = json.loads(text)
    except ValueError:
        return None
    if not isinstance(fields, dict):
        return None
    team, channel, thread, user = (fields.get(k) for k in ("t", "c", "th", "u"))
    if not (isinstance(team, str) and isinstance(channel, str) and isinstance(user, str)):
        return None
    if not channel or not (thread is None or isinstance(thread, str)):
        return None
    return Target(team, channel, thread, user)
