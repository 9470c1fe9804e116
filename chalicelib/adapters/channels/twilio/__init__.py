"""Twilio Programmable Messaging: SMS, MMS and WhatsApp through Twilio (webhooks, media).

The adapter is `adapter.py`, its settings `settings.py`: the registries import each on first use.
"""
