"""Who may run a command that changes a shared conversation.

``commands.system_prompt_policy`` (anyone | admins | nobody) and
``commands.reset_policy`` (anyone | admins). In a DM the conversation is the
person's own, so they may always change it, unless the prompt policy is ``nobody``
(that turns the feature off for the whole bot).
"""

from __future__ import annotations

from typing import Literal

from .config import PromptPolicy, ResetPolicy
from .types import IncomingMessage

Verdict = Literal["allowed", "admins_only", "disabled"]


def system_prompt_verdict(policy: PromptPolicy, msg: IncomingMessage) -> Verdict:
    """May ``msg``'s author set or clear the conversation's system prompt?"""
    if policy == "nobody":
        return "disabled"
    return _verdict(policy, msg)


def reset_verdict(policy: ResetPolicy, msg: IncomingMessage) -> Verdict:
    """May ``msg``'s author make the bot forget the conversation?"""
    return _verdict(policy, msg)


def _verdict(policy: PromptPolicy | ResetPolicy, msg: IncomingMessage) -> Verdict:
    if policy == "anyone" or msg.is_dm or msg.author_is_admin:
        return "allowed"
    return "admins_only"
