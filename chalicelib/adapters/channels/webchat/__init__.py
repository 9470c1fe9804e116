"""The hub's own web chat widget API."""

from chalicelib.adapters.channels.webchat.adapter import WebchatAdapter

__all__ = ["WebchatAdapter"]
