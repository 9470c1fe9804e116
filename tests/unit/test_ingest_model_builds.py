"""The webhook function's cold start builds the pydantic models a webhook needs and no others
(issue 14, I1): a fresh interpreter builds the AWS ingest path and reports which of the models the
ingest path imports but never validates got their validators built anyway. Each one built costs
every webhook cold start its schema (about 0.5-2 ms); a failure names the model that lost its
`defer_build`. The deferred models still validate exactly as before on first use."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from tests.support.ingest_probe import run_after_cold_path

#: Imported on the ingest path, validated only elsewhere (the send path, rare inbound events, a
#: settings mixin only its subclass is validated through).
NOT_BUILT = {
    "chalicelib.domain.outbound": ("OutboundMessage", "OutboundAttachment", "SendOutcome"),
    "chalicelib.domain.models": ("UnhandledEvent", "IdentityChange", "Contact", "Customer"),
    "chalicelib.adapters.channels.twilio.outbound_settings": ("TwilioOutboundSettings",),
}

PROBE = """
import importlib
names = json.loads(sys.argv[1])
print(json.dumps(sorted(f"{module}.{name}" for module, models in names.items() for name in models
                        if getattr(importlib.import_module(module), name).__pydantic_complete__)))
"""


def test_models_the_webhook_does_not_use_are_not_built_at_cold_start(tmp_path):
    completed = run_after_cold_path(tmp_path, PROBE, json.dumps(NOT_BUILT))
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert json.loads(completed.stdout.splitlines()[-1]) == []


def test_deferred_models_validate_on_first_use():
    from chalicelib.adapters.channels.twilio.settings import TwilioSettings
    from chalicelib.domain.models import IdentityChange, UnhandledEvent
    from chalicelib.domain.outbound import OutboundMessage, SendOutcome

    at = datetime(2026, 1, 2, tzinfo=UTC)
    event = UnhandledEvent.of("meta", "unknown field", {"a": [1, 2]}, at)
    assert UnhandledEvent.model_validate_json(event.model_dump_json()) == event
    change = IdentityChange.model_validate({
        "provider": "meta", "channel": "whatsapp", "provider_message_id": "m1", "account": "123",
        "previous": [{"kind": "phone", "value": "+4915123456789"}], "current": [{"kind": "whatsapp_user", "value": "US.1"}],
        "change": "user_changed_user_id",
    })
    assert change.order_key == "meta:123:phone:/+4915123456789"
    message = OutboundMessage(id="o1", customer_id="c1", case_id="k1", channel="sms", provider="twilio",
                              account="+14155550100", to="+14155550101", origin="cli", queued_at=at,
                              attachments=[{"url": "https://example.com/a.png"}])
    assert message.attachments[0].url == "https://example.com/a.png"
    assert SendOutcome(provider_message_id="SM1").status == "sent"
    settings = TwilioSettings.model_validate({"auth_tokens": ["env:X"], "public_url": "https://hub.example.com/t",
                                              "account_sid": "AC" + "0" * 32})
    assert settings.account_sid == "AC" + "0" * 32


def test_empty_list_defaults_are_new_lists_per_instance():
    from chalicelib.domain.models import InboundMessage

    fields = {"provider": "meta", "channel": "whatsapp", "provider_message_id": "m1", "account": "123",
              "sender": {"handles": [{"kind": "phone", "value": "+4915123456789"}]}, "content_type": "text",
              "text": "hi"}
    first, second = InboundMessage.model_validate(fields), InboundMessage.model_validate(fields)
    first.attachments.append("x")
    assert second.attachments == [] and InboundMessage.model_fields["attachments"].default_factory() == []


def test_worker_side_models_stay_importable_from_models_and_load_on_first_use():
    """`domain/models.py` still exports every model `domain/stored.py` defines (the same classes),
    and anything else is an AttributeError as before."""
    import pytest

    from chalicelib.domain import models, stored

    for name in models.STORED:
        assert getattr(models, name) is getattr(stored, name)
    from chalicelib.domain.models import Contact, Customer, ReplyIntent

    assert (Contact, Customer, ReplyIntent) == (stored.Contact, stored.Customer, stored.ReplyIntent)
    with pytest.raises(AttributeError):
        models.NoSuchModel  # noqa: B018
    with pytest.raises(ImportError):
        from chalicelib.domain.models import NoSuchModel  # noqa: F401


def test_every_model_of_stored_is_listed_for_the_lazy_export():
    from pydantic import BaseModel

    from chalicelib.domain import models, stored

    defined = {name for name, value in vars(stored).items()
               if isinstance(value, type) and issubclass(value, BaseModel) and value.__module__ == stored.__name__}
    assert defined <= models.STORED
    assert {"CallbackItem", "InboundEvent", "DeliveryWork"} <= models.STORED
