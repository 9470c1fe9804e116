"""Telegram bots (Bot API webhooks, files).

The adapter is `adapter.py`, its settings `settings.py`: the registries import each on first use.
"""
