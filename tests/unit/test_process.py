"""The process step: dedupe, resolution, case attachment, fan-out, crash safety, store call budget."""

from __future__ import annotations

from datetime import timedelta

import pytest

from chalicelib.adapters.blobs.local import LocalBlobStore
from chalicelib.adapters.store.sqlite import SqliteStore
from chalicelib.domain.identity_rules import IdentityRules
from chalicelib.domain.models import (
    Attachment,
    Channel,
    DeliveryJob,
    Handle,
    IdentityChange,
    InboundMessage,
    Sender,
    StatusEvent,
    UnhandledEvent,
)
from chalicelib.errors import QueueUnavailableError, TransientError
from chalicelib.hubconfig import parse_config
from chalicelib.service.identity import IdentifierCache, normalize_sender
from chalicelib.service.process import Outcome, Processor
from tests.support.fakes import Clock, CountingStore, MemoryQueue

CONFIG = parse_config(
    """
identity: {default_region: DE}
destinations:
  - {name: outbox, type: outbox}
  - {name: crm, type: webhook, url: "https://crm.example.com/hooks", secrets: ["whsec_AAAA"]}
"""
)


def message(message_id: str = "SM1", *, handles=None, channel=Channel.SMS, name=None) -> InboundMessage:
    return InboundMessage(
        provider="twilio",
        channel=channel,
        provider_message_id=message_id,
        account="+14155550100",
        sender=Sender(handles=handles or [Handle(kind="phone", value="0151 23456789")], display_name=name),
        text="Meine Bestellung fehlt",
    )


@pytest.fixture
def parts(tmp_path):
    store = CountingStore(SqliteStore(":memory:"))
    queue = MemoryQueue()
    clock = Clock()
    processor = Processor(
        store=store, delivery_queue=queue, config=CONFIG, cache=IdentifierCache(),
        default_region=lambda provider, account: "DE", clock=clock, blobs=LocalBlobStore(str(tmp_path / "blobs")),
        rules=IdentityRules(CONFIG.identity),
    )
    return processor, store, queue, clock


def test_a_new_message_creates_customer_case_contact_and_one_job_per_destination(parts):
    processor, store, queue, _ = parts

    result = processor.process(message(name="Jana"))

    assert result.outcome == Outcome.CONTACT_CREATED
    contact = store.get_contact(result.contact_id)
    assert [str(i) for i in contact.sender.identifiers] == ["phone:+4915123456789"]
    assert contact.resolution.created_customer and contact.resolution.rule == "new_customer"
    assert [DeliveryJob.model_validate_json(m.body).destination for m in queue.sent] == ["outbox", "crm"]
    assert len({m.group for m in queue.sent}) == 2, "one FIFO group per destination and customer"
    customer = store.get_customer(result.customer_id)
    assert customer.open_case.id == result.case_id
    assert customer.attributes["name"].value == "Jana"


def test_a_duplicate_costs_one_store_call_and_sends_nothing(parts):
    processor, store, queue, _ = parts
    processor.process(message())
    sent, store.calls[:] = len(queue.sent), []

    result = processor.process(message())

    assert result.outcome == Outcome.DUPLICATE
    assert store.calls == ["begin"]
    assert len(queue.sent) == sent


def test_a_duplicate_on_a_fresh_worker_costs_one_store_call_too(parts):
    processor, store, queue, _ = parts
    processor.process(message())
    processor.cache = IdentifierCache()
    sent, store.calls[:] = len(queue.sent), []

    assert processor.process(message()).outcome == Outcome.DUPLICATE
    assert store.calls == ["begin"]
    assert len(queue.sent) == sent


def test_a_returning_customer_costs_one_read_and_the_commit_when_the_identifier_is_cached(parts):
    processor, store, queue, _ = parts
    first = processor.process(message("SM1"))
    store.calls[:] = []

    second = processor.process(message("SM2", channel=Channel.WHATSAPP))

    # The customer and the message's done marker in one read (`begin`), then the commit.
    assert store.calls == ["begin", "commit_contact"]
    assert second.customer_id == first.customer_id
    assert second.case_id == first.case_id
    case = store.get_case(second.case_id)
    assert (case.contact_count, case.channels) == (2, [Channel.SMS, Channel.WHATSAPP])


def test_a_returning_customer_on_a_fresh_worker_costs_the_lookup_the_customer_and_the_commit(parts):
    processor, store, _, _ = parts
    first = processor.process(message("SM1"))
    processor.cache = IdentifierCache()
    store.calls[:] = []

    second = processor.process(message("SM2"))

    # The identifiers' owners and the message's done marker in one read (`begin`).
    assert store.calls == ["begin", "get_customer", "commit_contact"]
    assert second.customer_id == first.customer_id


def test_a_new_customer_is_created_only_after_the_done_marker_was_read(parts):
    processor, store, _, _ = parts

    processor.process(message("SM1", handles=[Handle(kind="phone", value="+4915199999999")]))

    assert store.calls[:2] == ["begin", "create_customer"]


def test_a_message_without_linkable_identifiers_reads_its_done_marker_before_creating_a_customer(parts):
    processor, store, _, _ = parts
    nobody = message("SM1", handles=[Handle(kind="phone", value="not a number")])
    processor.process(nobody)
    store.calls[:] = []

    assert processor.process(nobody).outcome == Outcome.DUPLICATE
    assert store.calls == ["begin"]


def test_two_attempts_at_one_message_committed_concurrently_make_one_contact_and_the_loser_a_duplicate(parts):
    """Should the queue ever hand one message to two workers at once, both decide from the same
    reads and queue the same job ids, but only one commit lands; the other decides again and finds
    the message done."""
    processor, store, queue, _ = parts
    customer = processor.process(message("SM1")).customer_id
    inner, commits, results = store._store, [], []
    original_commit = inner.commit_contact
    queued = message("SM2")  # one queue message, handed to two workers

    def commit_after_the_other_attempt_decided(commit):
        commits.append(commit)
        if len(commits) == 1:
            # The second attempt runs to its commit while the first is about to commit.
            results.append(processor.process(queued))
        original_commit(commit)

    inner.commit_contact = commit_after_the_other_attempt_decided
    first = processor.process(queued)

    [second] = results
    assert {first.outcome, second.outcome} == {Outcome.CONTACT_CREATED, Outcome.DUPLICATE}
    assert first.outcome == Outcome.DUPLICATE, "the attempt that committed last lost and found the message done"
    assert commits[0].contact.id == commits[1].contact.id
    assert [c.id for c in store.list_contacts(customer, limit=10).items].count(second.contact_id) == 1
    assert len(store.list_contacts(customer, limit=10).items) == 2
    jobs = [DeliveryJob.model_validate_json(m.body) for m in queue.sent]
    assert len({j.delivery_id for j in jobs}) == len({(j.contact.id, j.destination) for j in jobs})


def test_a_failed_fan_out_leaves_nothing_behind_and_the_retry_produces_the_same_ids(parts):
    processor, store, queue, _ = parts
    queue.fail_sends = 1

    with pytest.raises(QueueUnavailableError):
        processor.process(message("SM9"))
    retried = processor.process(message("SM9"))

    assert retried.outcome == Outcome.CONTACT_CREATED
    assert store.get_contact(retried.contact_id) is not None


def test_a_crash_after_fan_out_reprocesses_to_the_same_contact_and_delivery_ids(parts):
    processor, store, queue, _ = parts
    original_commit = store._store.commit_contact
    store._store.commit_contact = lambda commit: (_ for _ in ()).throw(RuntimeError("crash"))
    queued = message("SM7")  # the same queue message is redelivered after the crash
    with pytest.raises(RuntimeError):
        processor.process(queued)
    first_jobs = [DeliveryJob.model_validate_json(m.body) for m in queue.sent]
    store._store.commit_contact = original_commit

    result = processor.process(queued)

    assert {j.contact.id for j in first_jobs} == {result.contact_id}
    assert len(queue.sent) == 2, "the retry's jobs carry the same dedupe ids and are dropped by the queue"


def test_unusable_identifiers_are_reported_on_the_contact_not_fatal(parts):
    processor, store, _, _ = parts

    result = processor.process(message("SM3", handles=[Handle(kind="phone", value="not a number")]))

    contact = store.get_contact(result.contact_id)
    assert contact.sender.identifiers == []
    assert contact.resolution.rule == "new_customer_without_linkable_identifier"
    assert contact.enrichment["data_quality"]["rejected_identifiers"] == ["phone: not a phone number: not a number"]
    assert "invalid_phone" in store.get_customer(result.customer_id).quality_issues


def test_unverified_claims_never_link_customers(parts):
    processor, store, _, _ = parts
    claim = Handle(kind="email", value="jane@example.com", verified=False)

    first = processor.process(message("W1", handles=[Handle(kind="webchat", scope="acme", value="v1"), claim]))
    second = processor.process(message("W2", handles=[Handle(kind="webchat", scope="acme", value="v2"), claim]))

    assert first.customer_id != second.customer_id
    assert [str(i) for i in store.get_contact(first.contact_id).sender.unverified] == ["email:jane@example.com"]


def test_status_events_are_recorded_once(parts):
    processor, store, queue, _ = parts
    status = StatusEvent(provider="twilio", channel=Channel.SMS, provider_message_id="SM5", status="delivered")

    assert processor.process(status).outcome == Outcome.STATUS_RECORDED
    assert processor.process(status).outcome == Outcome.STATUS_DUPLICATE
    assert queue.sent == []


def test_a_contact_too_large_for_one_store_item_keeps_its_raw_payload_in_the_blob_store(parts):
    processor, store, _, _ = parts
    large = message("SM-big").model_copy(update={"raw": {"Body": "x" * 400_000}})

    result = processor.process(large)

    contact = store.get_contact(result.contact_id)
    assert contact.raw == {"$blob": f"raw/{result.contact_id}.json"}
    assert len(contact.model_dump_json()) < 300 * 1024
    assert processor.blobs.get(contact.raw["$blob"]).startswith(b'{"Body": "xxx')


def processor_for(config, tmp_path) -> Processor:
    return Processor(
        store=SqliteStore(":memory:"), delivery_queue=MemoryQueue(), config=config, cache=IdentifierCache(),
        default_region=config.identity.region_for, clock=Clock(), blobs=LocalBlobStore(str(tmp_path)),
        rules=IdentityRules(config.identity),
    )


def test_national_numbers_are_read_with_the_region_of_the_account_they_were_sent_to(tmp_path):
    config = parse_config("identity: {default_region: US, account_regions: {'twilio:+4930123456': de}}")
    processor = processor_for(config, tmp_path)
    german = message("SM-de").model_copy(update={"account": "+4930123456"})
    american = message("SM-us", handles=[Handle(kind="phone", value="(415) 555-0101")])

    de = processor.store.get_contact(processor.process(german).contact_id)
    us = processor.store.get_contact(processor.process(american).contact_id)

    assert [str(i) for i in de.sender.identifiers] == ["phone:+4915123456789"]
    assert [str(i) for i in us.sender.identifiers] == ["phone:+14155550101"]


def test_a_family_sharing_a_blocked_whatsapp_number_is_never_merged_by_its_whatsapp_account(tmp_path):
    config = parse_config("identity: {blocked: ['phone:+4915231341214']}\ndestinations: [{name: outbox, type: outbox}]")
    processor = processor_for(config, tmp_path)
    shared = [Handle(kind="whatsapp_user", value="DE.4141624983"), Handle(kind="whatsapp", value="4915231341214")]
    account_only = [Handle(kind="whatsapp_user", value="DE.4141624983")]

    julia = processor.process(message("wamid.1", handles=shared, name="Julia"))
    jonas = processor.process(message("wamid.2", handles=shared, name="Jonas"))
    later = processor.process(message("wamid.3", handles=account_only, name="Julia"))

    assert len({julia.customer_id, jonas.customer_id, later.customer_id}) == 3
    decisions = processor.store.get_contact(later.contact_id).resolution.decisions
    assert [(d.identifier, d.outcome) for d in decisions] == [("whatsapp_user:DE.4141624983", "blocked")]
    assert decisions[0].rule == "blocked: seen with a blocked number before"
    first = processor.store.get_contact(julia.contact_id).resolution.decisions
    assert {d.outcome for d in first} == {"blocked"}


def test_an_unusable_whatsapp_number_flags_an_invalid_phone_too(parts):
    processor, store, _, _ = parts

    result = processor.process(message("SM4", handles=[Handle(kind="whatsapp", value="12")]))

    assert "invalid_phone" in store.get_customer(result.customer_id).quality_issues


# --- merges --------------------------------------------------------------------------------------

MERGE_CONFIG = parse_config("identity: {default_region: DE}\ndestinations: [{name: outbox, type: outbox}]")
PHONE_HANDLE = Handle(kind="phone", value="0151 23456789")
EMAIL_HANDLE = Handle(kind="email", value="Jana@Example.com")


def merging_processor(tmp_path, config=MERGE_CONFIG) -> Processor:
    processor = processor_for(config, tmp_path)
    processor.event_destinations = lambda: ["outbox"]
    return processor


def kinds_sent(queue: MemoryQueue) -> list[tuple[str, str]]:
    """(kind, event type) of each queued delivery unit, in order."""
    import json

    return [(body["kind"], body["event_type"]) for body in (json.loads(m.body) for m in queue.sent)]


def test_a_contact_tying_two_customers_merges_them_announces_it_and_lands_on_the_survivor(tmp_path):
    processor = merging_processor(tmp_path)
    by_sms = processor.process(message("SM-1", handles=[PHONE_HANDLE]))
    processor.clock.advance(60)
    by_mail = processor.process(message("SM-2", handles=[EMAIL_HANDLE]))
    processor.delivery_queue.sent.clear()

    both = processor.process(message("SM-3", handles=[PHONE_HANDLE, EMAIL_HANDLE]))

    assert both.customer_id == by_sms.customer_id  # the older customer survives
    survivor = processor.store.get_customer(by_sms.customer_id)
    assert {str(i) for i in survivor.identifiers} == {"phone:+4915123456789", "email:jana@example.com"}
    assert processor.store.get_customer(by_mail.customer_id).merged_into == by_sms.customer_id
    decisions = processor.store.get_contact(both.contact_id).resolution.decisions
    assert (decisions[0].identifier, decisions[0].outcome) == ("phone:+4915123456789", "merged")
    assert f"{by_mail.customer_id} merged into {by_sms.customer_id}" in decisions[0].rule
    # The merge is announced before the contact, in the same per-customer order.
    assert kinds_sent(processor.delivery_queue) == [("customer_event", "customer.merged"), ("contact", "contact.created")]


def test_a_crash_after_the_merge_still_announces_it_on_the_retry_exactly_once(tmp_path):
    processor = merging_processor(tmp_path)
    processor.process(message("SM-1", handles=[PHONE_HANDLE]))
    processor.clock.advance(60)
    processor.process(message("SM-2", handles=[EMAIL_HANDLE]))
    processor.delivery_queue.sent.clear()
    store = processor.store
    original_send = processor.delivery_queue._send_batch
    processor.delivery_queue._send_batch = lambda messages: (_ for _ in ()).throw(ConnectionError("queue down"))
    tying = message("SM-3", handles=[PHONE_HANDLE, EMAIL_HANDLE])
    with pytest.raises(QueueUnavailableError):
        processor.process(tying)
    processor.delivery_queue._send_batch = original_send

    retried = processor.process(tying)

    assert retried.outcome == Outcome.CONTACT_CREATED
    assert kinds_sent(processor.delivery_queue) == [("customer_event", "customer.merged"), ("contact", "contact.created")]
    assert len(store.get_customer(retried.customer_id).merges) == 1


def test_customers_with_different_external_ids_are_not_merged_and_the_refusal_is_recorded(tmp_path):
    processor = merging_processor(tmp_path)
    first = processor.process(message("SM-1", handles=[Handle(kind="external", value="CRM-1"), PHONE_HANDLE]))
    processor.clock.advance(60)
    second = processor.process(message("SM-2", handles=[Handle(kind="external", value="CRM-2"), EMAIL_HANDLE]))

    both = processor.process(message("SM-3", handles=[PHONE_HANDLE, EMAIL_HANDLE]))

    assert both.customer_id == second.customer_id  # email outranks phone: the email's owner
    decisions = {d.outcome: d for d in processor.store.get_contact(both.contact_id).resolution.decisions}
    assert decisions["merge_refused"].rule == "merge_protection: the customers hold different external identifiers"
    assert processor.store.get_customer(first.customer_id).merged_into is None
    assert ("customer_event", "customer.merged") not in kinds_sent(processor.delivery_queue)


def test_with_auto_merge_off_the_conflict_is_recorded_and_nobody_is_merged(tmp_path):
    config = parse_config("identity: {default_region: DE, auto_merge: false}")
    processor = merging_processor(tmp_path, config)
    first = processor.process(message("SM-1", handles=[PHONE_HANDLE]))
    processor.clock.advance(60)
    processor.process(message("SM-2", handles=[EMAIL_HANDLE]))

    both = processor.process(message("SM-3", handles=[PHONE_HANDLE, EMAIL_HANDLE]))

    outcomes = [d.outcome for d in processor.store.get_contact(both.contact_id).resolution.decisions]
    assert "owned_by_other_customer" in outcomes and "merged" not in outcomes
    assert processor.store.get_customer(first.customer_id).merges == []


def test_a_worker_whose_cache_still_names_a_merged_or_erased_customer_resolves_afresh(tmp_path):
    from chalicelib.service.gdpr import erase_customer
    from chalicelib.service.merge import Merges

    processor = merging_processor(tmp_path)
    jana = processor.process(message("SM-1", handles=[PHONE_HANDLE]))
    processor.clock.advance(60)
    other = processor.process(message("SM-2", handles=[EMAIL_HANDLE]))  # cached: email -> other
    Merges.of(processor.store, processor.config).merge(jana.customer_id, other.customer_id, now=processor.clock(),
                                                     trigger="api:test")

    after_merge = processor.process(message("SM-3", handles=[PHONE_HANDLE, EMAIL_HANDLE]))

    outcomes = [d.outcome for d in processor.store.get_contact(after_merge.contact_id).resolution.decisions]
    assert after_merge.customer_id == jana.customer_id
    assert outcomes == ["matched", "already_linked"]

    processor.clock.advance(60)
    mail = Handle(kind="email", value="erased@example.com")
    gone = processor.process(message("SM-4", handles=[mail]))  # cached: that email -> gone
    erase_customer(processor.store, processor.blobs, processor.delivery_queue, gone.customer_id,
                   now=processor.clock(), event_destinations=[])

    after_erasure = processor.process(message("SM-5", handles=[PHONE_HANDLE, mail]))

    assert after_erasure.customer_id == jana.customer_id
    linked = processor.store.get_customer(jana.customer_id).identifiers
    assert "email:erased@example.com" in {str(i) for i in linked}


def test_parked_and_suppressed_contacts_are_stored_but_not_delivered(tmp_path):
    config = parse_config("""
identity: {default_region: DE}
destinations: [{name: outbox, type: outbox}]
routing:
  rules:
    - {name: spam, when: {text: {contains: [casino]}}, then: {suppress: spam}}
    - {name: check, when: {new_customer: true}, then: {park: first contact}}
""")
    processor = processor_for(config, tmp_path)

    parked = processor.process(message("SM-1"))
    suppressed = processor.process(message("SM-2").model_copy(update={"text": "Casino bonus!!"}))

    assert parked.destinations == () and suppressed.destinations == ()
    assert processor.delivery_queue.sent == []
    assert processor.store.get_contact(parked.contact_id).routing.parked == "first contact (rule check)"
    assert processor.store.get_contact(suppressed.contact_id).routing.suppressed == "spam (rule spam)"
    assert [p.contact_id for p in processor.store.list_parked(limit=5).items] == [parked.contact_id]


def test_an_unhandled_item_is_kept_once_until_its_retention_ends_and_nothing_is_sent(parts):
    processor, store, queue, clock = parts
    event = UnhandledEvent.of("meta", "entry[0]: field 'new' is not handled", {"field": "new"}, clock())

    assert processor.process(event).outcome == Outcome.UNHANDLED_RECORDED
    assert processor.process(event).outcome == Outcome.UNHANDLED_DUPLICATE
    assert queue.sent == []
    assert store.list_unhandled(day=clock().date(), limit=5).items == [event]
    clock.advance(timedelta(days=CONFIG.processing.unhandled_days, seconds=1).total_seconds())
    store.purge_expired(clock())
    assert store.list_unhandled(day=event.received_at.date(), limit=5).items == []


def test_an_identity_change_for_a_customer_the_hub_never_met_creates_nobody(parts):
    processor, store, queue, _ = parts
    change = IdentityChange(
        provider="meta", channel=Channel.WHATSAPP, provider_message_id="wamid.S1", account="106540352242922",
        previous=[Handle(kind="whatsapp_user", value="US.OLD")], current=[Handle(kind="whatsapp_user", value="US.NEW")],
        change="user_changed_user_id",
    )

    assert processor.process(change).outcome == Outcome.IDENTITY_UNMATCHED
    assert store.find_customer_ids([*processor_identifiers(change)]) == {} and queue.sent == []


def test_an_identity_change_links_the_new_id_once_and_a_repeat_changes_nothing(parts):
    processor, store, queue, _ = parts
    first = processor.process(message(handles=[Handle(kind="whatsapp_user", value="US.OLD"),
                                                Handle(kind="whatsapp", value="4915123456789")], channel=Channel.WHATSAPP))
    change = IdentityChange(
        provider="meta", channel=Channel.WHATSAPP, provider_message_id="wamid.S1", account="106540352242922",
        previous=[Handle(kind="whatsapp_user", value="US.OLD")], current=[Handle(kind="whatsapp_user", value="US.NEW")],
        change="user_changed_user_id",
    )
    sent = len(queue.sent)

    result = processor.process(change)
    version = store.get_customer(first.customer_id).version
    again = processor.process(change)

    assert (result.outcome, result.customer_id) == (Outcome.IDENTITY_CHANGED, first.customer_id)
    assert again.customer_id == first.customer_id and store.get_customer(first.customer_id).version == version
    ids = store.find_customer_ids(processor_identifiers(change))
    assert set(ids.values()) == {first.customer_id} and len(ids) == 2
    assert len(queue.sent) == sent, "an identity change delivers nothing"


def processor_identifiers(change) -> list:
    return normalize_sender([*change.previous, *change.current], None, default_region="DE").party.identifiers


class FlakyMedia:
    """A media localizer whose provider never answers: transient until told it is the last try."""

    def __init__(self) -> None:
        self.calls: list[bool] = []

    def localize(self, contact, *, retry_transient=True, embedded=None, seconds_left=None):
        self.calls.append(retry_transient)
        if retry_transient:
            raise TransientError("media download from graph.facebook.com timed out")
        report = {"attachments": [{"index": 0, "status": "deferred", "reason": "transient"}]}
        return contact.model_copy(update={"enrichment": {**contact.enrichment, "media": report}})


def test_a_download_that_keeps_failing_is_deferred_on_the_last_receive_and_the_message_delivered(parts):
    processor, store, queue, _ = parts
    media = FlakyMedia()
    processor.media = lambda: media
    photo = message("SM9").model_copy(update={"attachments": [Attachment(url="https://api.twilio.com/x/Media/ME1")]})
    body = photo.model_dump_json()

    for receive in range(1, CONFIG.processing.max_receives):
        with pytest.raises(TransientError):
            processor.process_body(body, receive_count=receive)
    result = processor.process_body(body, receive_count=CONFIG.processing.max_receives)

    assert media.calls == [True] * (CONFIG.processing.max_receives - 1) + [False]
    assert result.outcome == Outcome.CONTACT_CREATED and len(queue.sent) == 2
    assert store.get_contact(result.contact_id).enrichment["media"]["attachments"][0]["status"] == "deferred"


def test_a_media_source_failing_unexpectedly_rejects_the_attachment_and_the_contact_is_still_processed(parts, tmp_path):
    from chalicelib.adapters.media.http import MediaHttp
    from chalicelib.service.media import MediaLocalizer, MediaSettings
    from chalicelib.secrets import SecretResolver
    from tests.unit.test_media import SimClock, fake_sources

    processor, store, queue, _ = parts
    localizer = MediaLocalizer(MediaSettings(), LocalBlobStore(str(tmp_path / "media")), SecretResolver({}),
                               http=MediaHttp(), sources=fake_sources(SimClock(), takes=0, outcome="key_error"))
    processor.media = lambda: localizer
    photo = message("SM10").model_copy(update={
        "provider": "fake", "attachments": [Attachment(url="https://files.fake.test/0.jpg")],
    })

    result = processor.process(photo)

    assert result.outcome == Outcome.CONTACT_CREATED and len(queue.sent) == 2
    [entry] = store.get_contact(result.contact_id).enrichment["media"]["attachments"]
    assert (entry["status"], entry["reason"]) == ("rejected", "source_error")


class TimedMedia:
    """Records the time the processor gives the downloads of each message."""

    def __init__(self) -> None:
        self.budgets: list[float] = []

    def localize(self, contact, *, retry_transient=True, embedded=None, seconds_left=None):
        self.budgets.append(seconds_left())
        return contact


@pytest.mark.parametrize("worker_left", [None, 12.0, 300.0])
def test_downloads_get_the_workers_time_left_minus_a_reserve(parts, worker_left):
    from chalicelib.service.process import MEDIA_BUDGET_SECONDS, MEDIA_RESERVE_SECONDS

    # No worker limit (the embedded runtime): the default budget. A Lambda's time left, minus what
    # follows the downloads; never more than the default, which the claim's lease bounds.
    expected = {None: MEDIA_BUDGET_SECONDS, 12.0: 12.0 - MEDIA_RESERVE_SECONDS, 300.0: MEDIA_BUDGET_SECONDS}[worker_left]
    processor, *_ = parts
    media = TimedMedia()
    processor.media = lambda: media
    photo = message("SM11").model_copy(update={"attachments": [Attachment(url="https://api.twilio.com/x/Media/ME1")]})

    processor.process_body(photo.model_dump_json(), seconds_left=None if worker_left is None else lambda: worker_left)

    [given] = media.budgets
    assert expected - 1 < given <= expected
