"""Every media source, by its key, as the channel providers declare them (`ChannelAdapter.media_sources`).

Each source names the provider (`Contact.provider`) it serves; one provider may have several
(Meta: WhatsApp media ids, and Messenger/Instagram files on its CDN), tried in the order below.
The sources are imported on first use (`LazyRegistry`), so validating a `media:` section or
fetching one provider's file does not load every provider; the table also names each source's
provider and `media.<settings_field>` section (tests/unit/test_lazy_registries.py holds it equal
to the adapters' `media_sources`).
"""

from chalicelib.adapters.lazy import LazyRegistry

_PACKAGE = "chalicelib.adapters.channels"

#: key -> (class, provider, settings_field)
_SOURCES = {
    "twilio": (f"{_PACKAGE}.twilio.media:TwilioMediaSource", "twilio", "twilio"),
    "meta": (f"{_PACKAGE}.meta.whatsapp_media:WhatsAppCloudSource", "meta", "whatsapp"),
    "meta_cdn": (f"{_PACKAGE}.meta.cdn_media:MetaCdnSource", "meta", "meta_cdn"),
    "slack": (f"{_PACKAGE}.slack.media:SlackFilesSource", "slack", "slack"),
    "telegram": (f"{_PACKAGE}.telegram.media:TelegramMediaSource", "telegram", "telegram"),
}

MEDIA_SOURCES = LazyRegistry("media source", {key: path for key, (path, _, _) in _SOURCES.items()})
#: The provider each source serves, by source key, in trial order.
MEDIA_SOURCE_PROVIDERS = {key: provider for key, (_, provider, _) in _SOURCES.items()}
#: Each source's section under `media:`, to its source key.
MEDIA_SOURCE_FIELDS = {field: key for key, (_, _, field) in _SOURCES.items()}
