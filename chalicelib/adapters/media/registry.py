"""Every media source, by its key, as the channel providers declare them (`ChannelAdapter.media_sources`).

Each source names the provider (`Contact.provider`) it serves; one provider may have several
(Meta: WhatsApp media ids, and Messenger/Instagram files on its CDN).
"""

from chalicelib.adapters.channels.registry import CHANNELS
from chalicelib.adapters.registry import register

MEDIA_SOURCES = register(*(source for adapter in CHANNELS.values() for source in adapter.media_sources))
