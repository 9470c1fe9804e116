"""`POST /v1/events` and `/v1/events/explain` through HTTP on the embedded hub: the contract, the
scopes, and what lands on the events queue. The event processor (another piece) is replaced by a
recording fake where a test needs processing; the intake itself runs for real."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.domain.business_events import EventIn, event_group, event_queue_dedupe_id
from tests.functional.conftest import API_KEY, RunningHub, start_hub

PRODUCER_KEY = "producer-key"
READER_KEY = "reader-key"
OPERATOR_KEY = "operator-key"


def _key(name: str, key: str, scopes: list[str]) -> dict:
    return {"name": name, "sha256": hashlib.sha256(key.encode()).hexdigest(), "scopes": scopes}


@pytest.fixture
def hub(tmp_path, receiver):
    """The hub without workers, so what the API queued stays on the events queue to be read."""
    keys = [_key("tests", API_KEY, ["customers:read", "operations"]), _key("producer", PRODUCER_KEY, ["events:write"]),
            _key("reader", READER_KEY, ["customers:read"]), _key("operator", OPERATOR_KEY, ["operations"])]
    runtime = start_hub(tmp_path, receiver, extra={"api_keys": keys}).start(workers=False)
    try:
        yield RunningHub(runtime, receiver, tmp_path / "data")
    finally:
        runtime.stop()


def now() -> datetime:
    return datetime.now(timezone.utc)


def event(**changes) -> dict:
    body = {"type": "parcel.late", "id": "shop:parcel-1", "occurred_at": (now() - timedelta(minutes=5)).isoformat(),
            "customer": {"identifier": "phone:+14155550123"}, "data": {"delay_hours": 30, "parcel": "P-1"}}
    body.update(changes)
    return body


def post(hub: RunningHub, body, *, key: str | None = PRODUCER_KEY, path: str = "/v1/events"):
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return hub.post(path, raw, headers)


def queued(hub: RunningHub) -> list:
    """Everything on the events queue, taken off it (a group's next message is received only
    after its head is deleted)."""
    taken = []
    while batch := hub.hub.events_queue.receive(max_messages=10):
        hub.hub.events_queue.delete([m.receipt for m in batch])
        taken.extend(batch)
    return taken


def test_an_event_is_accepted_and_queued_in_the_customers_group(hub):
    sent = event()
    answer = post(hub, sent)

    assert answer.status == 202, answer.body
    assert answer.json() == {"data": [{"id": "shop:parcel-1", "status": "queued"}]}
    [message] = queued(hub)
    body = json.loads(message.body)
    assert body["kind"] == "event"
    assert body["event"]["type"] == "parcel.late"
    assert body["event"]["id"] == "shop:parcel-1"
    assert body["event"]["source"] == "api:producer"
    assert body["event"]["customer"] == {"identifier": "phone:+14155550123", "customer_id": None}
    assert body["event"]["data"] == {"delay_hours": 30, "parcel": "P-1"}
    assert datetime.fromisoformat(body["event"]["occurred_at"]) == datetime.fromisoformat(sent["occurred_at"])
    assert message.group == event_group(EventIn.model_validate(sent), "phone:+14155550123")


def test_a_batch_in_either_form_is_queued_in_order_and_a_broadcast_has_its_own_group(hub):
    batch = [event(id="a", customer=None, type="outage.started", data={"postcodes": ["10115"]}),
             event(id="b", customer={"customer_id": "cus_1"}), event(id="c", type="brand.new.type_we_never_saw")]

    as_object = post(hub, {"events": batch[:2]})
    as_array = post(hub, [batch[2]])

    assert as_object.status == as_array.status == 202
    assert [item["id"] for item in as_object.json()["data"]] == ["a", "b"]
    messages = queued(hub)
    assert [json.loads(m.body)["event"]["id"] for m in messages] == ["a", "b", "c"]
    groups = {json.loads(m.body)["event"]["id"]: m.group for m in messages}
    assert len(set(groups.values())) == 3


def test_one_invalid_event_refuses_the_batch_naming_each_field_and_queues_nothing(hub):
    batch = [event(id="ok"), event(id="late", occurred_at="2026-03-02T08:00:00"),
             event(id="", type="Not A Type"), event(id="who", customer={"identifier": "phone:+1", "customer_id": "c"}),
             event(id="bad-number", customer={"identifier": "phone:not-a-number-555-secret"})]

    answer = post(hub, {"events": batch})

    assert answer.status == 400
    error = answer.json()["error"]
    assert error["code"] == "invalid_event"
    fields = error["detail"]["fields"]
    assert set(fields) == {"events[1].occurred_at", "events[2].id", "events[2].type", "events[3].customer",
                           "events[4].customer.identifier"}
    assert "events[1].occurred_at" in error["message"]
    assert "not-a-number-555-secret" not in answer.body.decode()  # values are never echoed
    assert queued(hub) == []


def test_a_single_event_names_its_fields_without_a_prefix(hub):
    answer = post(hub, event(occurred_at=(now() + timedelta(days=2)).isoformat(), extra="x"))

    assert answer.status == 400
    assert answer.json()["error"]["detail"]["fields"] == {
        "occurred_at": "is more than 1 day in the future", "extra": "Extra inputs are not permitted"}


def test_batches_hold_1_to_100_events(hub):
    too_many = post(hub, [event(id=f"e{i}") for i in range(101)])
    empty = post(hub, {"events": []})
    hundred = post(hub, [event(id=f"e{i}") for i in range(100)])

    assert too_many.status == 400
    assert too_many.json()["error"]["detail"]["fields"] == {"events": "at most 100 events per request, not 101"}
    assert empty.status == 400
    assert hundred.status == 202
    assert hub.hub.events_queue.depth() == 100


def test_bodies_that_are_not_json_objects_or_arrays_are_refused(hub):
    assert post(hub, b"{not json").status == 400
    assert post(hub, b'"a string"').json()["error"]["code"] == "bad_request"
    assert post(hub, b"x" * (1024 * 1024 + 1)).status == 413
    assert queued(hub) == []


def test_the_events_scope_is_required(hub):
    missing = post(hub, event(), key=None)
    unknown = post(hub, event(), key="no-such-key")
    reader = post(hub, event(), key=READER_KEY)

    assert missing.status == unknown.status == 401
    assert reader.status == 403
    assert "events:write" in reader.json()["error"]["message"]
    assert queued(hub) == []


def test_check_duplicates_answers_an_event_processed_before_without_queueing_it(hub):
    done_until = (now() + timedelta(days=8)).timestamp()
    with hub.hub.store._db.write() as conn:  # the done marker the event worker's commit writes
        conn.execute("INSERT INTO dedupe (key, state, expires_at) VALUES (?, 'done', ?)",
                     ("event:shop:parcel-1", done_until))

    checked = post(hub, [event(), event(id="new")], path="/v1/events?check_duplicates=true")
    unchecked = post(hub, event())

    assert checked.json()["data"] == [{"id": "shop:parcel-1", "status": "duplicate"}, {"id": "new", "status": "queued"}]
    assert unchecked.json()["data"] == [{"id": "shop:parcel-1", "status": "queued"}]
    assert [json.loads(m.body)["event"]["id"] for m in queued(hub)] == ["new", "shop:parcel-1"]
    assert post(hub, event(), path="/v1/events?check_duplicates=maybe").status == 400


def test_a_repeated_id_is_queued_once_within_the_queues_dedupe_window(hub):
    first = post(hub, event())
    again = post(hub, event())

    assert first.status == again.status == 202
    [message] = queued(hub)
    assert json.loads(message.body)["event"]["id"] == "shop:parcel-1"
    assert event_queue_dedupe_id("shop:parcel-1") != event_queue_dedupe_id("shop:parcel-2")


class RecordingProcessor:
    def __init__(self) -> None:
        self.explained: list[dict] = []
        self.processed: list[tuple[str, int]] = []

    def explain(self, body: dict) -> dict:
        self.explained.append(body)
        return {"trace": [{"rule": "events", "matched": True, "reason": "event parcel.late"}], "would_send": []}

    def process_body(self, body: str, *, receive_count: int) -> str:
        self.processed.append((body, receive_count))
        return "event_processed"


def test_explain_needs_operations_and_hands_the_body_to_the_event_processor(hub):
    processor = RecordingProcessor()
    hub.hub.event_processor = processor
    body = {"event": event(), "customer": {"attributes": {"postcode": "10115"}}}

    producer = post(hub, body, key=PRODUCER_KEY, path="/v1/events/explain")
    operator = post(hub, body, key=OPERATOR_KEY, path="/v1/events/explain")

    assert producer.status == 403
    assert operator.status == 200
    assert operator.json()["trace"][0]["rule"] == "events"
    assert processor.explained == [body]
    assert queued(hub) == []


def test_the_events_worker_hands_each_queued_event_to_the_processor_and_acknowledges_it(hub):
    processor = RecordingProcessor()
    hub.hub.event_processor = processor
    post(hub, [event(id="one"), event(id="two", customer={"customer_id": "cus_9"})])

    outcome = hub.hub.workers.poll("events", wait_seconds=0)

    assert len(outcome.finished) == 2
    assert set(outcome.results.values()) == {"event_processed"}
    assert [json.loads(body)["event"]["id"] for body, _ in processor.processed] == ["one", "two"]
    assert all(count == 1 for _, count in processor.processed)
    assert hub.hub.events_queue.depth() == 0
    assert hub.hub.counters.total("EventsProcessed", stage="events") == 2


def test_explain_refuses_an_event_the_hub_would_refuse_before_any_rule_runs(hub):
    processor = RecordingProcessor()
    hub.hub.event_processor = processor

    answer = post(hub, {"event": event(type="Bad Type"), "customer": "cus_1", "dry": True}, key=OPERATOR_KEY,
                  path="/v1/events/explain")

    assert answer.status == 400
    assert answer.json()["error"]["detail"]["fields"] == {
        "event.type": "String should match pattern '^[a-z0-9][a-z0-9_.:-]{0,99}$'",
        "customer": "must be an object (a customer record to explain against)",
        "dry": "Extra inputs are not permitted"}
    assert processor.explained == []


def test_the_embedded_scheduler_fires_due_timers_into_the_event_workers(tmp_path, receiver):
    """The runtime's timer thread moves a due timer onto the events queue and an events worker
    hands it to the event processor; a timer not yet due stays armed."""
    from chalicelib.service.case_timers import case_timers

    runtime = start_hub(tmp_path, receiver)
    processor = RecordingProcessor()
    runtime.hub.event_processor = processor
    due = case_timers("case_1", "cus_1", {"sla": now() - timedelta(seconds=1)})
    later = case_timers("case_2", "cus_2", {"follow_up": now() + timedelta(hours=1)})
    runtime.hub.timers.arm([*due, *later])
    runtime.start()
    try:
        hub = RunningHub(runtime, receiver, tmp_path / "data")
        hub.wait_for(lambda: processor.processed, timeout=10, message="the fired timer")
    finally:
        runtime.stop()

    [(body, _)] = processor.processed
    assert json.loads(body) == json.loads(due[0].payload)
    assert [t.name for t in runtime.hub.timers.due(now() + timedelta(hours=2), 10)] == [later[0].name]


def test_a_queue_that_refuses_the_batch_answers_503_so_the_producer_retries(hub):
    from chalicelib.errors import QueueUnavailableError

    class Refusing:
        name = "events"

        def send(self, messages):
            raise QueueUnavailableError("queue events unavailable (send)")

    hub.hub.__dict__["events_queue"] = Refusing()

    answer = post(hub, event())

    assert answer.status == 503
    assert answer.headers["retry-after"] == "5"
    assert answer.json()["error"]["code"] == "queue_unavailable"
