"""Every channel provider, by URL key (`/webhooks/{key}`): one line per provider package.

Each adapter is imported on first use (`LazyRegistry`): a webhook imports the provider it serves,
and the configuration imports the settings of the providers it configures, nothing else. The pull
entries are declared here, not read from the classes, so the app can name its queue workers at
import without loading the providers (a test holds this table equal to each adapter's
`pull_entries`). A new provider is its own package plus one line below.
"""

from typing import NamedTuple

from chalicelib.adapters.channels.base import PullEntry
from chalicelib.adapters.lazy import LazyRegistry

_PACKAGE = "chalicelib.adapters.channels"

CHANNELS = LazyRegistry("channel adapter", {
    "twilio": f"{_PACKAGE}.twilio.adapter:TwilioAdapter",
    "meta": f"{_PACKAGE}.meta.adapter:MetaAdapter",
    "webchat": f"{_PACKAGE}.webchat.adapter:WebchatAdapter",
    "slack": f"{_PACKAGE}.slack.adapter:SlackAdapter",
    "telegram": f"{_PACKAGE}.telegram.adapter:TelegramAdapter",
    "x": f"{_PACKAGE}.x.adapter:XAdapter",
    "mailgun": f"{_PACKAGE}.mailgun.adapter:MailgunAdapter",
    "sendgrid": f"{_PACKAGE}.sendgrid.adapter:SendgridAdapter",
    "ses": f"{_PACKAGE}.ses.adapter:SesAdapter",
})

#: Each provider's configuration section model, in a module of its own (`<provider>/settings.py`,
#: pydantic only): typing the configuration at start-up imports no adapter, so a webhook function
#: pays for the provider it serves alone. A test holds it equal to each adapter's `Settings`.
CHANNEL_SETTINGS = LazyRegistry("channel settings", {
    "twilio": f"{_PACKAGE}.twilio.settings:TwilioSettings",
    "meta": f"{_PACKAGE}.meta.settings:MetaSettings",
    "webchat": f"{_PACKAGE}.webchat.settings:WebchatSettings",
    "slack": f"{_PACKAGE}.slack.settings:SlackSettings",
    "telegram": f"{_PACKAGE}.telegram.settings:TelegramSettings",
    "x": f"{_PACKAGE}.x.settings:XSettings",
    "mailgun": f"{_PACKAGE}.mailgun.settings:MailgunSettings",
    "sendgrid": f"{_PACKAGE}.sendgrid.settings:SendgridSettings",
    "ses": f"{_PACKAGE}.ses.settings:SesSettings",
}, keyed=False)

#: Every provider's queue-fed way in, by name (`PullEntry.name`), with the provider it belongs to:
#: the same entries as the adapters' `pull_entries` (tests/unit/test_lazy_registries.py).
PULL_ENTRIES: dict[str, tuple[str, PullEntry]] = {
    "ses-inbound": ("ses", PullEntry("ses-inbound", fifo=False, reserve_seconds=10.0)),
}


class ProviderPage(NamedTuple):
    """A provider's own public page: its handler (`"module:function"`, `HttpRequest ->
    chalice.Response`) and, for a page worth opening, what `make run` calls it."""

    provider: str
    handler: str
    announce: str | None = None


#: A provider's own public pages (its browser client: the web chat widget), by path, imported on
#: the page's first request. `chalicelib/api/pages.py` routes them; the app names no provider and
#: loads no provider package.
PAGES: dict[str, ProviderPage] = {
    "/webchat/widget.js": ProviderPage("webchat", f"{_PACKAGE}.webchat.pages:widget_script"),
    "/webchat/demo.html": ProviderPage("webchat", f"{_PACKAGE}.webchat.pages:demo_page", announce="Web chat demo"),
}

#: Where a provider describes its own HTTP API for the OpenAPI document (`"module:function"`
#: returning `chalicelib.api.openapi.spec.Operation`s): its pages and what its browser client
#: calls. Imported only when the document is built.
API_CONTRACTS: dict[str, str] = {
    "webchat": f"{_PACKAGE}.webchat.api_contract:operations",
}
