"""Every text the bot shows to people, in English and Korean.

Texts are ``str.format`` templates. ``{prefix}`` (the command prefix) is filled
in by :class:`Texts` itself; other placeholders come from the caller. A
placeholder the caller does not pass is left as it is, so a text can be handed
on as a template (``message_shortened`` gets its ``{removed}`` from the context
builder). Korean texts use the polite 해요체.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .tools.texts import EN as TOOL_EN
from .tools.texts import KO as TOOL_KO
from .usage_texts import USAGE_EN, USAGE_KO

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "!"

EN: Mapping[str, str] = {
    # -- commands --
    "help": (
        "Commands:\n"
        "`{prefix}reset`: forget this conversation and start over\n"
        "`{prefix}system <text>`: set the system prompt for this conversation\n"
        "`{prefix}system`: show the current system prompt\n"
        "`{prefix}system clear`: go back to the default system prompt\n"
        "`{prefix}usage`: show your token usage and cost\n"
        "`{prefix}forget me`: delete your messages in this workspace\n"
        "`{prefix}model`: show this conversation's model and the ones to pick from\n"
        "`{prefix}model <name>`: answer with another model here\n"
        "`{prefix}tools`: list the tools I can use here\n"
        "`{prefix}help`: show this list"
    ),
    "reset_done": "Done. I've forgotten this conversation, so let's start fresh.",
    "system_show": "The system prompt for this conversation:\n{prompt}",
    "system_default": (
        "This conversation uses the default system prompt:\n{prompt}\n"
        "Set your own with `{prefix}system <text>`."
    ),
    "system_set": "System prompt updated. It applies from your next message.",
    "system_cleared": "Custom system prompt removed; this conversation uses the default again.",
    "system_denied": "Only admins can change the system prompt here.",
    "system_disabled": "Changing the system prompt is turned off for this bot.",
    "system_too_long": (
        "That system prompt is too long. The limit is {limit} characters, so please shorten it."
    ),
    "empty_message": "Your message is empty. Send some text and I'll answer.",
    "unknown_command": (
        "I don't know the command `{prefix}{command}`. Send `{prefix}help` to see the commands."
    ),
    "not_allowed_here": "I'm not set up to answer here.",
    "slack_status": "is thinking…",
    "slack_placeholder": "Thinking…",
    "busy": (
        "I'm still answering earlier messages here and can't take more right now, "
        "so I skipped yours. Please send it again in a little while."
    ),
    "user_rate_limited": (
        "You're sending messages faster than I can answer. Please try again in {seconds} s."
    ),
    "reset_denied": "Only admins can reset this conversation here. Nothing was forgotten.",
    "too_many_waiting": (
        "You already have messages waiting for an answer in this channel (I hold at most "
        "{count} per person), so I skipped this one. Please send it again after I've "
        "answered those."
    ),
    # -- shown to the model, not the user --
    "message_shortened": "[This message was too long, so {removed} tokens were cut from it.]",
    # -- errors: what happened, and whether trying again helps --
    "error_rate_limited": "The model is rate-limited right now. Please try again in a minute.",
    "error_unavailable": (
        "The model service isn't responding right now. Please try again in a few minutes."
    ),
    "error_context_too_long": (
        "This conversation is too long for the model. "
        "Send `{prefix}reset` to start over, or try a shorter message."
    ),
    "error_timeout": "The model took too long to answer. Please try again.",
    "error_interrupted": (
        "The answer was cut off because the connection to the model broke. Please ask again."
    ),
    "error_auth": (
        "The model service rejected the bot's API key. Trying again won't help; "
        "please tell whoever runs this bot."
    ),
    "error_not_found": (
        "The model service doesn't know the model or the address this bot is set up "
        "with. Please tell whoever runs this bot (openai.base_url, the model's name)."
    ),
    "error_bad_request": (
        "The model service refused this request. Try rephrasing your message; "
        "if it keeps happening, please tell whoever runs this bot."
    ),
    "error_internal": (
        "Something went wrong on my side. Please try again; "
        "if it keeps happening, please tell whoever runs this bot."
    ),
    "error_delivery": "I couldn't post the whole answer here. Please try again.",
    "error_empty_answer": (
        "The model sent back an empty answer. Please try again or rephrase your message."
    ),
    # -- console --
    "console_question": "question: ",
    "console_answer": "answer: ",
    "console_answer_recovered": "answer (to your question before the restart): ",
    "console_welcome": (
        "Chatting in the terminal. Type `{prefix}help` for commands; Ctrl+D or Ctrl+C quits."
    ),
    # -- start-up --
    "no_platforms": (
        "No chat platform is configured. Set DISCORD_BOT_TOKEN for Discord, or "
        "SLACK_BOT_TOKEN and SLACK_APP_TOKEN for Slack, then start again. "
        "To chat in this terminal instead, run: python -m bot console"
    ),
    # -- Discord slash command descriptions (at most 100 characters) --
    "slash_reset": "Forget this conversation and start over",
    "slash_system": "Show, set or clear the system prompt for this conversation",
    "slash_system_text": "New system prompt; 'clear' for the default; leave empty to show it",
    "slash_help": "Show what the bot can do",
    "slash_model": "Show this conversation's model, or pick another one",
    "slash_model_name": "The model to answer with here; leave empty to see the list",
    "model_show": (
        "This conversation uses `{model}`. Models to pick from:\n{models}\n"
        "Pick one with `{prefix}model <name>`."
    ),
    "model_only": "This bot answers with `{model}`; there is no other model to pick.",
    "model_set": "From your next message on, this conversation uses `{model}`.",
    "model_unknown": "There is no model called `{model}` here. Models to pick from:\n{models}",
    "model_denied": "Only admins can change the model here.",
    "model_disabled": "Changing the model is turned off for this bot.",
    "model_price": "(${price_in} in / ${price_out} out per million tokens)",
    # -- answers --
    "answer_capped": (
        "[The answer stops here: it reached the limit of {limit} messages. "
        "Ask for the rest, or for a shorter answer.]"
    ),
    "reasoning_label": "Thought",
    # -- attachments --
    "files_skipped": "[Not read: {items}.]",
    "file_too_many": "{name} (only {limit_files} files per message)",
    "file_too_large": "{name} (larger than {limit_mb} MB)",
    "file_too_many_pixels": "{name} (the picture is over {limit_mp} megapixels)",
    "file_unsupported": "{name} (I can't read this kind of file)",
    "file_not_image": "{name} (it is not really an image)",
    "file_failed": "{name} (the download failed)",
    "file_unreadable": "{name} (the file seems damaged)",
    "file_cut": "{name} (only the first {limit_pages} pages or {limit_chars} characters)",
    "images_not_read": "[This model can't see images, so I read only the text.]",
    "nothing_readable": "I couldn't read anything in your message.",
    # -- storage failures and shutdown --
    "error_storage": (
        "I couldn't save your message, so I can't answer it right now. "
        "Please try again in a moment."
    ),
    "error_storage_read": (
        "I couldn't read this conversation from my storage, so I can't answer right now. "
        "Please try again in a moment."
    ),
    "error_storage_answer": (
        "I couldn't save this answer (my storage failed), so I may give it again after a restart."
    ),
    "console_storage_failed": "error: could not save your message ({detail}); stopping.",
    "console_not_asked": "stopping: {count} line(s) read but not asked.",
    "cut_by_restart": "— cut short by a restart; I'll answer again when I'm back.",
}

KO: Mapping[str, str] = {
    # -- commands --
    "help": (
        "명령어 목록이에요.\n"
        "`{prefix}reset`: 이 대화를 잊고 새로 시작해요\n"
        "`{prefix}system <내용>`: 이 대화의 시스템 프롬프트를 정해요\n"
        "`{prefix}system`: 지금 쓰는 시스템 프롬프트를 보여 줘요\n"
        "`{prefix}system clear`: 기본 시스템 프롬프트로 돌아가요\n"
        "`{prefix}usage`: 내 토큰 사용량과 비용을 보여 줘요\n"
        "`{prefix}forget me`: 이 워크스페이스에서 보낸 내 메시지를 지워요\n"
        "`{prefix}model`: 이 대화의 모델과 고를 수 있는 모델을 보여 줘요\n"
        "`{prefix}model <이름>`: 이 대화에서 다른 모델로 답해요\n"
        "`{prefix}tools`: 여기서 쓸 수 있는 도구를 보여 줘요\n"
        "`{prefix}help`: 이 목록을 보여 줘요"
    ),
    "reset_done": "이 대화 내용을 모두 잊었어요. 새로 시작해요.",
    "system_show": "이 대화의 시스템 프롬프트예요.\n{prompt}",
    "system_default": (
        "이 대화는 기본 시스템 프롬프트를 쓰고 있어요.\n{prompt}\n"
        "`{prefix}system <내용>`으로 직접 정할 수 있어요."
    ),
    "system_set": "시스템 프롬프트를 바꿨어요. 다음 메시지부터 적용돼요.",
    "system_cleared": "직접 정한 시스템 프롬프트를 지웠어요. 이제 다시 기본 프롬프트를 써요.",
    "system_denied": "여기서는 관리자만 시스템 프롬프트를 바꿀 수 있어요.",
    "system_disabled": "이 봇에서는 시스템 프롬프트를 바꿀 수 없도록 설정되어 있어요.",
    "system_too_long": "시스템 프롬프트가 너무 길어요. {limit}자 이내로 줄여 주세요.",
    "empty_message": "메시지가 비어 있어요. 내용을 적어서 보내 주시면 답해 드릴게요.",
    "unknown_command": (
        "모르는 명령어예요: `{prefix}{command}`\n"
        "`{prefix}help`를 보내면 쓸 수 있는 명령어를 볼 수 있어요."
    ),
    "not_allowed_here": "여기에서는 답하지 않도록 설정되어 있어요.",
    "slack_status": "생각하는 중…",
    "slack_placeholder": "답을 준비하는 중…",
    "busy": (
        "아직 앞의 메시지들에 답하고 있어서 지금은 더 받을 수 없어요. "
        "보내 주신 메시지는 건너뛰었으니 잠시 뒤에 다시 보내 주세요."
    ),
    "user_rate_limited": "메시지를 너무 빨리 보내고 있어요. {seconds}초 뒤에 다시 보내 주세요.",
    "reset_denied": "여기서는 관리자만 대화를 초기화할 수 있어요. 아무것도 지우지 않았어요.",
    "too_many_waiting": (
        "이 채널에 답을 기다리는 메시지가 이미 {count}개 있어서 이번 메시지는 건너뛰었어요. "
        "앞의 메시지에 답한 뒤에 다시 보내 주세요."
    ),
    # -- shown to the model, not the user --
    "message_shortened": "[이 메시지는 너무 길어서 {removed}토큰을 잘라 냈어요.]",
    # -- errors --
    "error_rate_limited": "지금 모델 사용량 한도에 걸렸어요. 1분쯤 뒤에 다시 시도해 주세요.",
    "error_unavailable": "지금 모델 서비스가 응답하지 않아요. 몇 분 뒤에 다시 시도해 주세요.",
    "error_context_too_long": (
        "대화가 너무 길어서 모델이 처리할 수 없어요. "
        "`{prefix}reset`으로 새로 시작하거나 더 짧게 보내 주세요."
    ),
    "error_timeout": "모델이 답하는 데 너무 오래 걸렸어요. 다시 시도해 주세요.",
    "error_interrupted": "모델과의 연결이 끊겨서 답이 중간에 끊겼어요. 다시 물어봐 주세요.",
    "error_auth": (
        "모델 서비스가 봇의 API 키를 거부했어요. 다시 시도해도 해결되지 않으니 "
        "봇을 운영하는 분께 알려 주세요."
    ),
    "error_not_found": (
        "모델 서비스가 이 봇에 설정된 모델이나 주소를 몰라요. "
        "봇을 운영하는 분께 알려 주세요 (openai.base_url, 모델 이름)."
    ),
    "error_bad_request": (
        "모델 서비스가 이 요청을 거절했어요. 메시지를 바꿔서 다시 보내 보시고, "
        "계속 그러면 봇을 운영하는 분께 알려 주세요."
    ),
    "error_internal": (
        "봇 내부에서 문제가 생겼어요. 다시 시도해 보시고, "
        "계속 그러면 봇을 운영하는 분께 알려 주세요."
    ),
    "error_delivery": "답을 여기에 다 올리지 못했어요. 다시 시도해 주세요.",
    "error_empty_answer": "모델이 빈 답을 보냈어요. 다시 시도하거나 말을 바꿔서 보내 주세요.",
    # -- console --
    "console_question": "질문: ",
    "console_answer": "답변: ",
    "console_answer_recovered": "답변 (재시작 전에 하신 질문): ",
    "console_welcome": (
        "터미널에서 대화하고 있어요. 명령어는 `{prefix}help`로 볼 수 있고, "
        "Ctrl+D나 Ctrl+C를 누르면 끝나요."
    ),
    # -- start-up --
    "no_platforms": (
        "설정된 채팅 플랫폼이 없어요. Discord를 쓰려면 DISCORD_BOT_TOKEN을, "
        "Slack을 쓰려면 SLACK_BOT_TOKEN과 SLACK_APP_TOKEN을 설정한 뒤 다시 시작해 주세요. "
        "터미널에서 대화하려면 python -m bot console을 실행하세요."
    ),
    # -- Discord slash command descriptions --
    "slash_reset": "이 대화를 잊고 새로 시작해요",
    "slash_system": "이 대화의 시스템 프롬프트를 보거나 정하거나 지워요",
    "slash_system_text": (
        "새 시스템 프롬프트예요. 'clear'는 기본값으로 돌아가고, 비워 두면 지금 값을 보여 줘요"
    ),
    "slash_help": "봇으로 할 수 있는 일을 보여 줘요",
    "slash_model": "이 대화의 모델을 보거나 다른 모델을 골라요",
    "slash_model_name": "이 대화에서 쓸 모델이에요. 비워 두면 목록을 보여 줘요",
    "model_show": (
        "이 대화는 `{model}` 모델을 써요. 고를 수 있는 모델이에요.\n{models}\n"
        "`{prefix}model <이름>`으로 골라 주세요."
    ),
    "model_only": "이 봇은 `{model}` 모델로 답해요. 고를 수 있는 다른 모델은 없어요.",
    "model_set": "다음 메시지부터 이 대화는 `{model}` 모델을 써요.",
    "model_unknown": "`{model}`이라는 모델은 없어요. 고를 수 있는 모델이에요.\n{models}",
    "model_denied": "모델은 관리자만 바꿀 수 있어요.",
    "model_disabled": "이 봇에서는 모델을 바꿀 수 없어요.",
    "model_price": "(100만 토큰당 입력 ${price_in} / 출력 ${price_out})",
    # -- answers --
    "answer_capped": (
        "[답변이 메시지 {limit}개 한도에 닿아서 여기서 멈췄어요. "
        "나머지나 더 짧은 답을 요청해 주세요.]"
    ),
    "reasoning_label": "생각",
    # -- attachments --
    "files_skipped": "[읽지 못한 파일: {items}.]",
    "file_too_many": "{name} (메시지당 파일은 {limit_files}개까지예요)",
    "file_too_large": "{name} ({limit_mb}MB보다 커요)",
    "file_too_many_pixels": "{name} (그림이 {limit_mp}메가픽셀보다 커요)",
    "file_unsupported": "{name} (읽을 수 없는 형식이에요)",
    "file_not_image": "{name} (실제로는 이미지가 아니에요)",
    "file_failed": "{name} (내려받지 못했어요)",
    "file_unreadable": "{name} (파일이 손상된 것 같아요)",
    "file_cut": "{name} (앞의 {limit_pages}쪽 또는 {limit_chars}자만 읽었어요)",
    "images_not_read": "[이 모델은 이미지를 볼 수 없어서 글만 읽었어요.]",
    "nothing_readable": "메시지에서 읽을 수 있는 내용이 없었어요.",
    # -- storage failures and shutdown --
    "error_storage": (
        "메시지를 저장하지 못해서 지금은 답할 수 없어요. 잠시 뒤에 다시 보내 주세요."
    ),
    "error_storage_read": (
        "저장소에서 이 대화를 읽지 못해서 지금은 답할 수 없어요. 잠시 뒤에 다시 보내 주세요."
    ),
    "error_storage_answer": (
        "저장소에 문제가 생겨 이 답을 저장하지 못했어요. "
        "재시작 뒤에 같은 답을 다시 드릴 수도 있어요."
    ),
    "console_storage_failed": "오류: 메시지를 저장하지 못해서 ({detail}) 종료해요.",
    "console_not_asked": "종료해요: 읽었지만 묻지 않은 줄이 {count}개 있어요.",
    "cut_by_restart": "— 재시작 때문에 답이 중간에 끊겼어요. 다시 켜지면 다시 답할게요.",
}

# Features keep their texts beside them (bot/usage_texts.py, bot/tools/texts.py).
CATALOG: Mapping[str, Mapping[str, str]] = {
    "en": {**EN, **USAGE_EN, **TOOL_EN},
    "ko": {**KO, **USAGE_KO, **TOOL_KO},
}


class _KeepMissing(dict[str, Any]):
    """Format arguments that leave an unknown ``{name}`` in place."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


@dataclass(frozen=True, slots=True)
class Texts:
    """The texts of one language, with the command prefix filled in."""

    language: str
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if self.language not in CATALOG:
            raise ValueError(f"no texts for language {self.language!r}; have {sorted(CATALOG)}")

    def get(self, key: str, **kwargs: Any) -> str:
        """The text ``key`` with its placeholders filled; KeyError if there is no such text."""
        template = CATALOG[self.language][key]
        return template.format_map(_KeepMissing({"prefix": self.prefix, **kwargs}))


def placeholders(template: str) -> frozenset[str]:
    """The ``{names}`` a template uses."""
    return frozenset(name for _, name, _, _ in string.Formatter().parse(template) if name)
