"""Meta's Graph platform: WhatsApp Cloud API, Messenger and Instagram messaging (webhooks, media).

The adapter is `adapter.py`, its settings `settings.py`: the registries import each on first use.
"""
