"""Mailgun inbound routes (email)."""

from chalicelib.adapters.channels.mailgun.adapter import MailgunAdapter

__all__ = ["MailgunAdapter"]
