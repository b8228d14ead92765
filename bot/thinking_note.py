"""``openai.show_reasoning``: a short, collapsed line of the model's thinking.

Posted just before the answer's first write (the thinking is complete by then), as a
message of its own, so it is never part of the stored answer. Each platform chooses
the collapsed form (a sink implementing :class:`bot.types.ReasoningSink`); a sink
without one shows nothing.
"""

from __future__ import annotations

import logging

from .indicator import TypingIndicator
from .reasoning import summary
from .types import Answer, ReasoningSink, ReplySink

log = logging.getLogger(__name__)

SUMMARY_CHARS = 300  # a glance at the thinking, not the whole of it


async def before_answer(
    typing: TypingIndicator, sink: ReplySink, answer: Answer, label: str | None
) -> None:
    """Settle the typing indicator, then show the thinking when ``label`` is set."""
    await typing.settle()
    if label is None or not answer.reasoning.strip() or not isinstance(sink, ReasoningSink):
        return
    try:
        await sink.show_reasoning(label, summary(answer.reasoning, SUMMARY_CHARS))
    except Exception as exc:  # optional: the answer matters more
        log.info("could not show the reasoning line: %s", exc)
