"""SendGrid Inbound Parse (email)."""

from chalicelib.adapters.channels.sendgrid.adapter import SendgridAdapter

__all__ = ["SendgridAdapter"]
