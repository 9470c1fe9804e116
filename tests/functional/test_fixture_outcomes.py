"""Every stored provider fixture (exact bytes and headers) through HTTP on one running hub: each
gets a 2xx and becomes what it should (messages, status events, deliberate skips, items kept
raw), and the workers make exactly the contacts, statuses and unhandled records that follow."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from chalicelib.bootstrap import Hub
from chalicelib.local.runtime import EmbeddedRuntime
from chalicelib.settings import Settings
from tests.contract.test_channel_adapter_contract import case_for
from tests.functional.conftest import RunningHub
from tests.support.fakes import Clock
from tests.support.fixtures import load

#: (provider, fixture) → (messages, status events, deliberately ignored, kept raw) it enqueues.
EXPECTED: dict[tuple[str, str], tuple[int, int, int, int]] = {
    ("meta", "instagram_seen"): (0, 1, 0, 0),
    ("meta", "instagram_story_mention"): (1, 0, 0, 0),
    ("meta", "instagram_story_reply"): (1, 0, 0, 0),
    ("meta", "instagram_text"): (1, 0, 0, 0),
    ("meta", "messenger_attachments"): (1, 0, 0, 0),
    ("meta", "messenger_batch"): (1, 1, 0, 0),
    ("meta", "messenger_delivery"): (0, 2, 0, 0),
    ("meta", "messenger_echo"): (0, 0, 1, 0),
    ("meta", "messenger_postback"): (1, 0, 0, 0),
    ("meta", "messenger_quick_reply"): (1, 0, 0, 0),
    ("meta", "messenger_reaction"): (1, 0, 0, 0),
    ("meta", "messenger_read"): (0, 1, 0, 0),
    ("meta", "messenger_text"): (1, 0, 0, 0),
    ("meta", "messenger_text_non_ascii"): (1, 0, 0, 0),
    ("meta", "whatsapp_bsuid_and_wa_id"): (1, 0, 0, 0),
    ("meta", "whatsapp_bsuid_only"): (1, 0, 0, 0),
    ("meta", "whatsapp_document"): (1, 0, 0, 0),
    ("meta", "whatsapp_image"): (1, 0, 0, 0),
    ("meta", "whatsapp_interactive_button_reply"): (1, 0, 0, 0),
    ("meta", "whatsapp_location"): (1, 0, 0, 0),
    ("meta", "whatsapp_reaction"): (1, 0, 0, 0),
    ("meta", "whatsapp_status_delivered"): (0, 1, 0, 0),
    ("meta", "whatsapp_status_failed"): (0, 1, 0, 0),
    ("meta", "whatsapp_status_read_bsuid"): (0, 1, 0, 0),
    ("meta", "whatsapp_text"): (1, 0, 0, 0),
    ("meta", "whatsapp_voice"): (1, 0, 0, 0),
    ("slack", "bot_echo"): (0, 0, 1, 0),
    ("slack", "dm_text"): (1, 0, 0, 0),
    ("slack", "dm_text_retry"): (1, 0, 0, 0),  # enqueued again; the worker drops it as a duplicate
    ("slack", "file_share"): (1, 0, 0, 0),
    ("slack", "message_changed"): (0, 0, 1, 0),
    ("slack", "reaction_added"): (0, 0, 0, 1),
    ("slack", "shared_channel_agent"): (0, 0, 1, 0),
    ("slack", "shared_channel_thread"): (1, 0, 0, 0),
    ("slack", "url_verification"): (0, 0, 0, 0),
    ("telegram", "callback_query"): (1, 0, 0, 0),
    ("telegram", "channel_post"): (0, 0, 1, 0),
    ("telegram", "contact_own"): (1, 0, 0, 0),
    ("telegram", "document_supergroup"): (1, 0, 0, 0),
    ("telegram", "edited_message"): (1, 0, 0, 0),
    ("telegram", "location"): (1, 0, 0, 0),
    ("telegram", "my_chat_member"): (0, 0, 1, 0),
    ("telegram", "photo"): (1, 0, 0, 0),
    ("telegram", "reply_emoji"): (1, 0, 0, 0),
    ("telegram", "text"): (1, 0, 0, 0),
    ("telegram", "voice"): (1, 0, 0, 0),
    ("x", "dm_echo"): (0, 0, 1, 0),
    ("x", "dm_media"): (1, 0, 0, 0),
    ("x", "dm_text"): (1, 0, 0, 0),
    ("x", "dm_unicode"): (1, 0, 0, 0),
    ("x", "dm_unicode_escaped"): (1, 0, 0, 0),
    ("x", "read_receipt"): (0, 1, 0, 0),
    ("x", "tweet_mention"): (0, 0, 1, 0),
    ("x", "typing"): (0, 0, 1, 0),
}
#: Fixtures that carry the same message as another one (a provider's redelivery).
DUPLICATES = {("slack", "dm_text_retry")}


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Post every fixture once, in order, and let the workers finish."""
    tmp = tmp_path_factory.mktemp("fixtures")
    providers = sorted({provider for provider, _ in EXPECTED})
    config = tmp / "hub.json"
    config.write_text(json.dumps({
        "channels": {p: case_for(p).settings for p in providers}, "media": {"enabled": False},
        "destinations": [{"name": "outbox", "type": "outbox", "path": "outbox.jsonl", "case_events": False}],
    }))  # fmt: skip
    settings = Settings(config_path=str(config), data_dir=str(tmp / "data"), port=0)
    clock = Clock(datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc))  # the fixtures' signing time
    runtime = EmbeddedRuntime(settings, hub=Hub(settings, clock=clock), port=0).start()
    hub = RunningHub(runtime, None, tmp / "data")
    try:
        answers, deltas = {}, {}
        for provider, name in EXPECTED:
            fixture = load(provider, name)
            before = counts(hub, provider)
            answers[provider, name] = hub.post(fixture.path, fixture.body, fixture.headers)
            after = counts(hub, provider)
            deltas[provider, name] = tuple(b - a for a, b in zip(before, after))
        hub.wait_for(hub.settled, message="every fixture processed")
        yield hub, answers, deltas
    finally:
        runtime.stop()


def counts(hub: RunningHub, provider: str) -> tuple[int, int, int]:
    total = hub.hub.counters.total
    return (total("EventsEnqueued", provider=provider), total("EventsIgnored", provider=provider),
            total("EventsUnhandled", provider=provider))  # fmt: skip


@pytest.mark.parametrize(("provider", "name"), list(EXPECTED), ids=[f"{p}/{n}" for p, n in EXPECTED])
def test_each_fixture_is_accepted_and_sorted_as_it_should_be(outcomes, provider, name):
    _, answers, deltas = outcomes
    messages, statuses, ignored, unhandled = EXPECTED[provider, name]
    assert 200 <= answers[provider, name].status < 300, answers[provider, name].body
    assert deltas[provider, name] == (messages + statuses, ignored, unhandled)


def test_the_workers_make_one_contact_per_distinct_message_and_record_the_rest(outcomes):
    hub, _, _ = outcomes
    total = hub.hub.counters.total
    messages = sum(e[0] for key, e in EXPECTED.items() if key not in DUPLICATES)
    assert len(hub.outbox()) == total("ContactsCreated", stage="process") == messages
    assert total("StatusesRecorded", stage="process") == sum(e[1] for e in EXPECTED.values())
    assert total("UnhandledRecorded", stage="process") == sum(e[3] for e in EXPECTED.values())
    channels = {line["data"]["contact"]["channel"] for line in hub.outbox()}
    assert channels == {"whatsapp", "messenger", "instagram", "slack", "telegram", "x"}


def test_slacks_url_verification_is_answered_with_its_challenge(outcomes):
    _, answers, _ = outcomes
    challenge = json.loads(load("slack", "url_verification").body)["challenge"]
    answer = answers["slack", "url_verification"]
    assert (answer.body.decode(), answer.headers["content-type"]) == (challenge, "text/plain")
