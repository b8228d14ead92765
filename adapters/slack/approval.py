"""A tool's approval question in Slack: a message with Allow/Deny buttons (Block Kit),
and what a press (a ``block_actions`` payload) means (bot/tools/approval.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.tools.approval import action_id, parse_action_id

SECTION_TEXT_LIMIT = 3000  # characters in a section block's text


def question_blocks(text: str, token: str, allow: str, deny: str) -> list[dict[str, Any]]:
    """The question as a section with two buttons under it."""
    buttons = [
        {
            "type": "button",
            "text": {"type": "plain_text", "text": label},
            "style": style,
            "action_id": action_id(token, yes),
            "value": "yes" if yes else "no",
        }
        for yes, label, style in ((True, allow, "primary"), (False, deny, "danger"))
    ]
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION_TEXT_LIMIT]}},
        {"type": "actions", "elements": buttons},
    ]


def answer_blocks(text: str) -> list[dict[str, Any]]:
    """The question once answered: its text, without buttons."""
    return [{"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION_TEXT_LIMIT]}}]


def pressed(body: Mapping[str, Any]) -> tuple[str, bool, str] | None:
    """(token, yes, presser's user id) of a block_actions payload, else None."""
    actions = body.get("actions")
    user = body.get("user")
    if not isinstance(actions, list) or not actions or not isinstance(user, Mapping):
        return None
    first = actions[0]
    value = first.get("action_id") if isinstance(first, Mapping) else None
    parsed = parse_action_id(value) if isinstance(value, str) else None
    if parsed is None or not isinstance(user.get("id"), str):
        return None
    return parsed[0], parsed[1], user["id"]
