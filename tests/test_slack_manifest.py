"""slack-manifest.yaml asks for exactly what the adapter uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MANIFEST = Path(__file__).resolve().parent.parent / "slack-manifest.yaml"
SCOPES = {
    "app_mentions:read",  # app_mention
    "channels:history",  # message.channels
    "groups:history",  # message.groups
    "im:history",  # message.im
    "chat:write",  # chat.postMessage / update / delete / *Stream
    "users:read",  # users.info for readable names
    "assistant:write",  # assistant.threads.setStatus
    "files:read",  # files.info and url_private downloads (attachments)
}
EVENTS = {"app_mention", "message.channels", "message.groups", "message.im"}


def load() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    return data


def test_scopes_and_events_are_exactly_what_is_used() -> None:
    manifest = load()
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == SCOPES
    assert "user" not in manifest["oauth_config"]["scopes"]
    assert set(manifest["settings"]["event_subscriptions"]["bot_events"]) == EVENTS


def test_socket_mode_on_interactivity_on_and_dms_allowed() -> None:
    manifest = load()
    settings, features = manifest["settings"], manifest["features"]
    assert settings["socket_mode_enabled"] is True
    # Interactivity: the Allow/Deny buttons of tools that need approval (block actions).
    assert settings["interactivity"]["is_enabled"] is True
    assert features["bot_user"]["display_name"]
    assert features["app_home"]["messages_tab_enabled"] is True
    # Slack grants assistant:write only together with the assistant view.
    assert features["assistant_view"]["assistant_description"]
