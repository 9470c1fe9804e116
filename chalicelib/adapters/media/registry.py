"""Every media source, by its key; each names the provider (`Contact.provider`) it serves."""

from chalicelib.adapters.media.meta_cdn import MetaCdnSource
from chalicelib.adapters.media.slack import SlackFilesSource
from chalicelib.adapters.media.telegram import TelegramMediaSource
from chalicelib.adapters.media.twilio import TwilioMediaSource
from chalicelib.adapters.media.whatsapp import WhatsAppCloudSource
from chalicelib.adapters.registry import register

MEDIA_SOURCES = register(WhatsAppCloudSource, MetaCdnSource, TwilioMediaSource, TelegramMediaSource, SlackFilesSource)
