"""The tool feature's texts, in English and Korean (merged into bot/texts.py)."""

from __future__ import annotations

from collections.abc import Mapping

EN: Mapping[str, str] = {
    "tool_running": "🔧 Running `{tool}`…",
    "tool_done": "🔧 `{tool}` done.",
    "tool_failed": "🔧 `{tool}` failed: {error}",
    "tool_approval": (
        "The model wants to run `{tool}` with {arguments}. "
        "Reply `{prefix}yes` to allow it or `{prefix}no` to refuse (within {seconds}s)."
    ),
    "tool_allow": "Allow",
    "tool_deny": "Deny",
    "tool_approved": "Allowed: `{tool}` runs now.",
    "tool_denied": "Refused: `{tool}` was not run.",
    "tool_approval_timeout": "No answer in time: `{tool}` was not run.",
    "tools_round_limit": (
        "[I stopped using tools: this answer reached its limit of tool rounds. "
        "Ask again, or ask for less.]"
    ),
    "tool_result_truncated": "[Result shortened: {shown} of {total} tokens shown.]",
    "tools_list": "Tools in this conversation (✋: asks you before it runs):\n{tools}",
    "tools_none": "No tools are available in this conversation right now.",
    "tools_off": "Tools are not enabled in this conversation.",
    "tools_down": "Not connected now (their tools are hidden): {servers}",
    "tool_no_question": "There is no question waiting for your answer.",
    "slash_tools": "List the tools the bot can use in this conversation",
}

KO: Mapping[str, str] = {
    "tool_running": "🔧 `{tool}` 실행 중이에요…",
    "tool_done": "🔧 `{tool}` 실행을 마쳤어요.",
    "tool_failed": "🔧 `{tool}` 실행에 실패했어요: {error}",
    "tool_approval": (
        "모델이 `{tool}`을(를) {arguments}(으)로 실행하려고 해요. "
        "허락하려면 `{prefix}yes`, 거절하려면 `{prefix}no`라고 답해 주세요({seconds}초 안에)."
    ),
    "tool_allow": "허락",
    "tool_deny": "거절",
    "tool_approved": "허락했어요. 지금 `{tool}`을(를) 실행해요.",
    "tool_denied": "거절했어요. `{tool}`은(는) 실행하지 않았어요.",
    "tool_approval_timeout": "제때 답이 없어서 `{tool}`은(는) 실행하지 않았어요.",
    "tools_round_limit": "[도구 사용 횟수 한도에 닿아서 도구 사용을 멈췄어요.]",
    "tool_result_truncated": "[결과를 줄였어요: {total}토큰 중 {shown}토큰만 보여요.]",
    "tools_list": "이 대화에서 쓸 수 있는 도구예요(✋: 실행하기 전에 물어봐요).\n{tools}",
    "tools_none": "지금 이 대화에서 쓸 수 있는 도구가 없어요.",
    "tools_off": "이 대화에서는 도구가 켜져 있지 않아요.",
    "tools_down": "지금 연결되지 않은 서버예요(도구가 숨겨져 있어요): {servers}",
    "tool_no_question": "답을 기다리는 질문이 없어요.",
    "slash_tools": "이 대화에서 봇이 쓸 수 있는 도구를 보여 줘요",
}
