"""The texts of usage, quotas and forgetting, in English and Korean (merged into
bot/texts.py's catalog; kept here so that file stays small to edit)."""

from __future__ import annotations

from collections.abc import Mapping

USAGE_EN: Mapping[str, str] = {
    "quota_person_tokens": (
        "You've reached your daily limit of {limit} tokens, so I can't answer now. "
        "It resets at {reset}."
    ),
    "quota_person_cost": (
        "You've reached your daily spending limit of {limit}, so I can't answer now. "
        "It resets at {reset}."
    ),
    "quota_workspace_tokens": (
        "This workspace has reached its monthly limit of {limit} tokens, so I can't answer "
        "now. It resets at {reset}."
    ),
    "quota_workspace_cost": (
        "This workspace has reached its monthly spending limit of {limit}, so I can't answer "
        "now. It resets at {reset}."
    ),
    "usage_totals": "{tokens} tokens ({prompt} in, {completion} out), {cost}",
    "usage_unpriced": "(+{count} answers from models without a price)",
    "usage_estimated": "({count} answers counted by the bot, not the server)",
    "usage_own_today": "Your usage today: {totals}",
    "usage_own_month": "Your usage this month: {totals}",
    "usage_conversation_month": "This conversation this month: {totals}",
    "usage_workspace_month": "This workspace this month: {totals}",
    "usage_top_users": "Top users this month:",
    "usage_prices_as_of": "Costs use the price table dated {date}.",
    "usage_off": "Usage is not recorded by this bot.",
    "forget_usage": (
        "Send `{prefix}forget me` to delete your messages in this workspace. "
        "Admins can name a user id instead of `me`."
    ),
    "forget_unavailable": "This bot's storage cannot delete messages by person.",
    "forget_denied": "Only admins can delete another person's messages.",
    "forget_done": "Done. I deleted {count} messages and the answers to them.",
    "slash_usage": "Show your token usage and cost",
    "slash_forget": "Delete your messages in this workspace",
    "slash_forget_who": "'me', or (admins) the user id whose messages to delete",
}

USAGE_KO: Mapping[str, str] = {
    "quota_person_tokens": (
        "오늘 쓸 수 있는 토큰 {limit}개를 다 써서 지금은 답할 수 없어요. {reset}에 초기화돼요."
    ),
    "quota_person_cost": (
        "오늘 쓸 수 있는 비용 {limit}을 다 써서 지금은 답할 수 없어요. {reset}에 초기화돼요."
    ),
    "quota_workspace_tokens": (
        "이 워크스페이스가 이번 달 토큰 한도 {limit}개를 다 써서 지금은 답할 수 없어요. "
        "{reset}에 초기화돼요."
    ),
    "quota_workspace_cost": (
        "이 워크스페이스가 이번 달 비용 한도 {limit}을 다 써서 지금은 답할 수 없어요. "
        "{reset}에 초기화돼요."
    ),
    "usage_totals": "토큰 {tokens}개 (입력 {prompt}, 출력 {completion}), {cost}",
    "usage_unpriced": "(가격이 없는 모델의 답 {count}개 더)",
    "usage_estimated": "(서버가 아니라 봇이 센 답 {count}개)",
    "usage_own_today": "오늘 내 사용량: {totals}",
    "usage_own_month": "이번 달 내 사용량: {totals}",
    "usage_conversation_month": "이번 달 이 대화: {totals}",
    "usage_workspace_month": "이번 달 이 워크스페이스: {totals}",
    "usage_top_users": "이번 달 많이 쓴 사람:",
    "usage_prices_as_of": "비용은 {date} 기준 가격표로 계산했어요.",
    "usage_off": "이 봇은 사용량을 기록하지 않아요.",
    "forget_usage": (
        "`{prefix}forget me`를 보내면 이 워크스페이스에서 보낸 내 메시지를 지워요. "
        "관리자는 `me` 대신 사용자 ID를 쓸 수 있어요."
    ),
    "forget_unavailable": "이 봇의 저장소는 사람별로 메시지를 지울 수 없어요.",
    "forget_denied": "다른 사람의 메시지는 관리자만 지울 수 있어요.",
    "forget_done": "완료했어요. 메시지 {count}개와 그 답을 지웠어요.",
    "slash_usage": "내 토큰 사용량과 비용을 보여 줘요",
    "slash_forget": "이 워크스페이스에서 보낸 내 메시지를 지워요",
    "slash_forget_who": "'me', 또는 (관리자) 메시지를 지울 사용자 ID",
}
