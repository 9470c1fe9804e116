"""Every channel provider, by URL key (`/webhooks/{key}`): one line per provider package.

The media sources and pull entries each provider declares are read from here too, so a new
provider is its own package plus one line below.
"""

from chalicelib.adapters.channels.mailgun import MailgunAdapter
from chalicelib.adapters.channels.meta import MetaAdapter
from chalicelib.adapters.channels.sendgrid import SendgridAdapter
from chalicelib.adapters.channels.ses import SesAdapter
from chalicelib.adapters.channels.slack import SlackAdapter
from chalicelib.adapters.channels.telegram import TelegramAdapter
from chalicelib.adapters.channels.twilio import TwilioAdapter
from chalicelib.adapters.channels.webchat import WebchatAdapter
from chalicelib.adapters.channels.x import XAdapter
from chalicelib.adapters.registry import register

CHANNELS = register(
    TwilioAdapter, MetaAdapter, WebchatAdapter, SlackAdapter, TelegramAdapter, XAdapter, MailgunAdapter,
    SendgridAdapter, SesAdapter,
)

#: Every provider's queue-fed way in, by name (`PullEntry.name`), with the provider it belongs to.
PULL_ENTRIES = {entry.name: (adapter.key, entry) for adapter in CHANNELS.values() for entry in adapter.pull_entries}
if len(PULL_ENTRIES) != sum(len(adapter.pull_entries) for adapter in CHANNELS.values()):
    raise RuntimeError("two channel providers declare a pull entry of the same name")
