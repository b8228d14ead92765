"""A model per conversation: the allowlist (``openai.models``) and the router that
sends each answer to the model its conversation picked with ``!model``.

The router keeps one :class:`bot.llm.OpenAIChat` per model, all on the process's one
client: each learns its own request shape (a parameter one model rejects is still
sent to the others), and reasoning settings apply per model.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass

import openai

from .config import ModelChoice, OpenAIConfig, VisionMode
from .llm import OpenAIChat
from .reasoning import ReasoningMode
from .tokens import TokenCounter, encoding_name_for
from .types import Answer, ChatMessage, ChatModel, Turn

# Per-turn count corrections kept for models of another encoding (a few MB at most).
MAX_RECOUNTED_TURNS = 20_000


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One pickable model, its settings filled in from ``openai``'s defaults."""

    name: str
    context_tokens: int
    vision: VisionMode
    reasoning: ReasoningMode


class Catalog:
    """The models a conversation may use; the configured ``openai.model`` first."""

    def __init__(self, models: Sequence[ModelInfo]) -> None:
        if not models:
            raise ValueError("a catalog needs at least the default model")
        self.default = models[0]
        self._by_name = {m.name: m for m in models}

    @classmethod
    def from_config(cls, ai: OpenAIConfig) -> Catalog:
        """``openai.model`` plus ``openai.models`` (an entry may refine the default's)."""
        listed = {choice.name: choice for choice in ai.models}
        names = [ai.model, *(c.name for c in ai.models if c.name != ai.model)]
        return cls([_info(ai, listed.get(name, ModelChoice(name=name))) for name in names])

    @property
    def models(self) -> list[ModelInfo]:
        return list(self._by_name.values())

    @property
    def choosable(self) -> bool:
        """Whether there is anything to pick between."""
        return len(self._by_name) > 1

    def get(self, name: str | None) -> ModelInfo:
        """``name``'s settings; the default for None or a name no longer listed."""
        return self._by_name.get(name or "", self.default)

    def find(self, name: str) -> ModelInfo | None:
        """The listed model called ``name`` (case-insensitive), or None."""
        wanted = name.strip().lower()
        return next((m for m in self._by_name.values() if m.name.lower() == wanted), None)


def _info(ai: OpenAIConfig, choice: ModelChoice) -> ModelInfo:
    return ModelInfo(
        name=choice.name,
        context_tokens=choice.context_tokens or ai.context_tokens,
        vision=choice.vision or ai.vision,
        reasoning=choice.reasoning or ai.reasoning,
    )


class ModelRouter:
    """:class:`bot.types.ChatModel` asking ``answer.model`` (the default when empty)."""

    def __init__(self, catalog: Catalog, make: Callable[[ModelInfo], ChatModel]) -> None:
        self._catalog = catalog
        self._make = make
        self._chats: dict[str, ChatModel] = {}  # bounded by the catalog

    def stream(self, messages: list[ChatMessage], answer: Answer) -> AsyncGenerator[str, None]:
        info = self._catalog.get(answer.model)
        chat = self._chats.get(info.name)
        if chat is None:
            chat = self._chats[info.name] = self._make(info)
        return chat.stream(messages, answer)


def chat_model(client: openai.AsyncOpenAI, ai: OpenAIConfig, catalog: Catalog) -> ChatModel:
    """The process's model: one OpenAIChat, or a router when there is a choice."""
    if not catalog.choosable:
        return OpenAIChat.from_config(client, ai)

    def make(info: ModelInfo) -> ChatModel:
        settings = dataclasses.replace(ai, model=info.name, reasoning=info.reasoning)
        return OpenAIChat.from_config(client, settings)

    return ModelRouter(catalog, make)


class Tokenizers:
    """A token counter per encoding, for trimming to the chosen model's tokenizer.

    Stored turns keep the counts made with the default counter when they were
    stored; :meth:`recount` corrects them for another encoding (the difference per
    turn is remembered, bounded), and the chosen model's counter measures what a
    build counts itself (the system prompt, name labels, a message to shorten).
    """

    def __init__(self, default: TokenCounter) -> None:
        self.default = default
        self._others: dict[str, TokenCounter] = {}  # bounded by the known encodings
        # (encoding, turn id) -> that encoding's count minus the default's, for the text.
        self._deltas: OrderedDict[tuple[str, int], int] = OrderedDict()

    def recount(self, turns: Sequence[Turn], counter: TokenCounter) -> list[Turn]:
        """``turns`` with token counts in ``counter``'s encoding (as they are for the
        default one); what else a count holds (tool calls, images) is kept."""
        if counter is self.default:
            return list(turns)
        out = []
        for turn in turns:
            key = (counter.encoding_name, turn.id)  # id 0: not stored, not remembered
            delta = self._deltas.get(key) if turn.id else None
            if delta is None:
                delta = counter.count(turn.content) - self.default.count(turn.content)
                if turn.id:
                    self._deltas[key] = delta
                    if len(self._deltas) > MAX_RECOUNTED_TURNS:
                        self._deltas.popitem(last=False)
            out.append(dataclasses.replace(turn, tokens=max(0, turn.tokens + delta)))
        return out

    async def for_model(self, model: str) -> TokenCounter:
        """``model``'s counter, its vocabulary loaded off the event loop the first time."""
        encoding = encoding_name_for(model)
        if not model or encoding == self.default.encoding_name:
            return self.default
        counter = self._others.get(encoding)
        if counter is None:
            counter = TokenCounter(encoding)
            await asyncio.to_thread(counter.warm)
            self._others[encoding] = counter
        return counter
