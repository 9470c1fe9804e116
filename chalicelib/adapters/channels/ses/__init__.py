"""Amazon SES inbound email, through SNS notifications or stored in S3."""

from chalicelib.adapters.channels.ses.adapter import SesAdapter

__all__ = ["SesAdapter"]
