"""Shared email parsing for the email providers (Mailgun, SendGrid, SES): MIME, HTML, quotes,
webhook forms, and the mapping of a parsed email onto the contact model."""
