"""Mailgun inbound routes (email).

The adapter is `adapter.py`, its settings `settings.py`: the registries import each on first use.
"""
