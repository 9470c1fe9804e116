"""Twilio Programmable Messaging: SMS, MMS and WhatsApp through Twilio (webhooks, media)."""

from chalicelib.adapters.channels.twilio.adapter import TwilioAdapter

__all__ = ["TwilioAdapter"]
