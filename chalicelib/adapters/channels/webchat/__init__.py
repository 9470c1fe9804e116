"""The hub's own web chat widget API.

The adapter is `adapter.py`, its settings `settings.py`: the registries import each on first use.
"""
