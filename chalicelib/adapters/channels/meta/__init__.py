"""Meta's Graph platform: WhatsApp Cloud API, Messenger and Instagram messaging (webhooks, media)."""

from chalicelib.adapters.channels.meta.adapter import MetaAdapter

__all__ = ["MetaAdapter"]
