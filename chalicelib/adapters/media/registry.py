"""Every media source, by provider key (`Contact.provider`)."""

from chalicelib.adapters.media.telegram import TelegramMediaSource
from chalicelib.adapters.media.twilio import TwilioMediaSource
from chalicelib.adapters.media.whatsapp import WhatsAppCloudSource
from chalicelib.adapters.registry import register

MEDIA_SOURCES = register(WhatsAppCloudSource, TwilioMediaSource, TelegramMediaSource)
