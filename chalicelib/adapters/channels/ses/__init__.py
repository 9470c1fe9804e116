"""Amazon SES inbound email, through SNS notifications or stored in S3.

The adapter is `adapter.py`, its settings `settings.py`: the registries import each on first use.
"""
