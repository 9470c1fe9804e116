"""Slack: customers in DMs and Slack Connect channels (Events API, files).

The adapter is `adapter.py`, its settings `settings.py`: the registries import each on first use.
"""
