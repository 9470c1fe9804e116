"""Slack: customers in DMs and Slack Connect channels (Events API, files)."""

from chalicelib.adapters.channels.slack.adapter import SlackAdapter

__all__ = ["SlackAdapter"]
