"""Every inbound channel provider, by URL key (`/webhooks/{key}`)."""

from chalicelib.adapters.channels.meta import MetaAdapter
from chalicelib.adapters.channels.slack import SlackAdapter
from chalicelib.adapters.channels.telegram import TelegramAdapter
from chalicelib.adapters.channels.twilio import TwilioAdapter
from chalicelib.adapters.channels.webchat import WebchatAdapter
from chalicelib.adapters.registry import register

CHANNELS = register(TwilioAdapter, MetaAdapter, WebchatAdapter, SlackAdapter, TelegramAdapter)
