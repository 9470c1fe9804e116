"""X (Twitter) Direct Messages through the Account Activity API."""

from chalicelib.adapters.channels.x.adapter import XAdapter

__all__ = ["XAdapter"]
