"""X (Twitter) Direct Messages through the Account Activity API.

The adapter is `adapter.py`, its settings `settings.py`: the registries import each on first use.
"""
