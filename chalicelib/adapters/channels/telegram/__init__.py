"""Telegram bots (Bot API webhooks, files)."""

from chalicelib.adapters.channels.telegram.adapter import TelegramAdapter

__all__ = ["TelegramAdapter"]
