"""Receives are a budget the hub must not lose: SQS moves a message to its dead-letter queue after
`maxReceiveCount` receives, whether the hub tried it or not. The hub gives up on a message itself
(the deliver worker writes a dead letter with its reason; the process worker's last receive
delivers what it has), so every work queue must leave the hub all of its receives plus the ones
that can be spent without a try:

    maxReceiveCount >= the hub's receives + (batch size - 1) + RECEIVES_LOST_OUTSIDE_THE_HUB

(batch size - 1): a message can be left untried in a batch, behind messages that used the
invocation's time, once per message ahead of it. RECEIVES_LOST_OUTSIDE_THE_HUB: receives no
handler sees (Lambda returns a batch it could not invoke when throttled, an init failure, a
timeout). The simulations below run the workers against the local queue, which moves a message
to its dead-letter queue exactly as SQS does, with the template's maxReceiveCount and visibility,
app.py's batch sizes, the functions' timeouts and each stage's settings.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
import time_machine
import yaml

from chalicelib.adapters.queue.base import OutgoingMessage
from chalicelib.adapters.queue.local import LocalQueue
from chalicelib.adapters.store.sqlite import SqliteStore
from chalicelib.api.workers import Workers
from chalicelib.bootstrap import LOCAL_PULL_MAX_RECEIVES
from chalicelib.errors import BatchIncompleteError, RetryableDeliveryError, TransientError
from chalicelib.hubconfig import load_config
from chalicelib.observability import Counters
from chalicelib.service.breaker import CircuitBreakers
from chalicelib.service.deliver import Deliverer
from chalicelib.service.process import ProcessResult
from tests.support.fakes import Clock, MemoryQueue, ScriptedConnector
from tests.unit.test_deliver import job

ROOT = Path(__file__).resolve().parents[2]
DEPLOYED_STAGES = ("dev", "prod")
#: Receives spent where no handler sees them (see the module docstring).
RECEIVES_LOST_OUTSIDE_THE_HUB = 3
#: Queue role → the template's queue, the Chalice function consuming it.
QUEUES = {
    "inbound": ("InboundQueue", "process_inbound"),
    "delivery": ("DeliveryQueue", "deliver"),
    "outbound": ("OutboundQueue", "send"),
    "ses-inbound": ("SesInboundQueue", "ses_inbound"),
}


def _template() -> dict:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load((ROOT / "infra" / "stateful.yaml").read_text(), Loader=Loader)


def queue_properties(role: str) -> dict:
    return _template()["Resources"][QUEUES[role][0]]["Properties"]


def batch_size(function: str) -> int:
    from app import app

    [size] = [source.batch_size for source in app.event_sources if source.name == function]
    return size


def function_timeout(function: str) -> int:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    return config["lambda_functions"][function]["lambda_timeout"]


def hub_receives(stage: str, role: str) -> int:
    config = load_config(ROOT / "chalicelib" / "conf" / f"{stage}.yaml")
    # The send worker gives up on a message at the delivery pipeline's receives (service/send_worker.py).
    return {"inbound": config.processing.max_receives, "delivery": config.delivery.max_receives,
            "outbound": config.delivery.max_receives,
            # A pull entry has no setting of its own: as many receives as the local queue gives it.
            "ses-inbound": LOCAL_PULL_MAX_RECEIVES}[role]


def required_receive_count(stage: str, role: str) -> int:
    """The least maxReceiveCount that leaves the hub its receives (module docstring); checked
    against the template by tests/integration/test_infra.py."""
    return hub_receives(stage, role) + batch_size(QUEUES[role][1]) - 1 + RECEIVES_LOST_OUTSIDE_THE_HUB


def test_deliveries_run_one_per_invocation():
    """A delivery may hold its invocation for most of the 60 s (inline retries against a slow
    vendor), so a batch of ten left nine untried, each losing a receive. One message per
    invocation: every receive the deliver worker sees is a try."""
    assert batch_size("deliver") == 1


# --- simulations ---------------------------------------------------------------------------------


class Invocation:
    """A Lambda context: `timeout` seconds, spent by the simulated work."""

    def __init__(self, timeout: float) -> None:
        self.left = timeout

    def get_remaining_time_in_millis(self) -> int:
        return int(self.left * 1000)

    def spend(self, seconds: float) -> None:
        self.left -= seconds


class Event(list):
    """Chalice's SQSEvent of received local-queue messages, with the invocation's context."""

    def __init__(self, messages, context) -> None:
        super().__init__(
            SimpleNamespace(body=m.body, receipt_handle=m.receipt, to_dict=lambda m=m: {
                "messageId": m.message_id,
                "attributes": {"ApproximateReceiveCount": str(m.receive_count), "MessageGroupId": m.group},
            })
            for m in messages
        )
        self.context = context


class Lambda:
    """What the event source mapping does: receive a batch, invoke, delete the batch when the
    handler succeeded (on an error the handler already deleted what it finished)."""

    def __init__(self, queue: LocalQueue, workers: Workers, role: str, function: str) -> None:
        self.queue, self.workers, self.role = queue, workers, role
        self.batch_size, self.timeout = batch_size(function), function_timeout(function)
        self.invocation = Invocation(self.timeout)

    def drain(self, traveller, *, rounds: int = 500) -> None:
        for _ in range(rounds):
            messages = self.queue.receive(max_messages=self.batch_size)
            if not messages:
                if self.queue.depth() == 0:
                    return
                traveller.shift(3 * 3600)  # past every visibility timeout and redelivery delay
                continue
            self.invocation = Invocation(self.timeout)
            try:
                self.workers.consume(self.role, Event(messages, self.invocation))
            except BatchIncompleteError:
                continue
            self.queue.delete([m.receipt for m in messages])
        raise AssertionError("the queue did not drain")


def local_queue(tmp_path, role: str) -> tuple[LocalQueue, LocalQueue]:
    """The role's queue shaped as the template makes it, and its dead-letter queue."""
    props = queue_properties(role)
    path = str(tmp_path / "queue.db")
    queue = LocalQueue(path, role, visibility_timeout=props["VisibilityTimeout"],
                       max_receives=props["RedrivePolicy"]["maxReceiveCount"], dead_letter=f"{role}-dlq")
    return queue, LocalQueue(path, f"{role}-dlq")


def workers(**services) -> Workers:
    defaults = dict(
        inbound_queue=lambda: None, delivery_queue=lambda: None, processor=lambda: None, deliverer=lambda: None,
        ingestion=lambda: None, pull_queue=lambda name: None, adapters=lambda key: None, pull_entries={},
        counters=Counters(emit_emf=False), clock=Clock(),
    )
    return Workers(**{**defaults, **services})


@pytest.mark.parametrize("stage", DEPLOYED_STAGES)
def test_a_job_is_never_dead_lettered_without_being_tried(stage, tmp_path):
    """Ten jobs for a vendor that is down and slow (15 s per call): each is tried on every
    receive until the hub gives up on it, and the hub writes every dead letter itself; SQS's
    redrive never takes a job the hub did not record."""
    queue, redriven = local_queue(tmp_path, "delivery")
    store, hub_dead_letters = SqliteStore(":memory:"), MemoryQueue("delivery-dlq")
    tried: dict[str, int] = {}

    class SlowAndDown(ScriptedConnector):
        def deliver(self, job):
            tried[job.delivery_id] = tried.get(job.delivery_id, 0) + 1
            simulated.invocation.spend(15)
            raise RetryableDeliveryError("503 from the vendor")

    settings = load_config(ROOT / "chalicelib" / "conf" / f"{stage}.yaml").delivery
    deliverer = Deliverer(
        store=store, connector={"crm": SlowAndDown()}.get, dead_letters=hub_dead_letters, settings=settings,
        clock=Clock(), sleep=lambda seconds: simulated.invocation.spend(seconds),
        # Its circuit would hold the jobs back without trying them, on purpose: not what is tested.
        breakers=CircuitBreakers(failure_threshold=10**6),
    )
    simulated = Lambda(queue, workers(delivery_queue=lambda: queue, deliverer=lambda: deliverer), "delivery", "deliver")
    jobs = [job().model_copy(update={"delivery_id": f"dlv_{i}", "contact": job().contact.model_copy(update={"id": f"ct_{i}"})})
            for i in range(10)]

    with time_machine.travel(datetime(2026, 1, 1, tzinfo=timezone.utc), tick=False) as traveller:
        queue.send([OutgoingMessage(body=j.model_dump_json(), group=f"crm:{j.contact.id}", dedupe_id=j.delivery_id)
                    for j in jobs])
        simulated.drain(traveller)

    assert redriven.depth() == 0, "SQS took jobs to the DLQ that the hub never recorded"
    letters = store.list_dead_letters(destination="crm", limit=100).items
    assert sorted(letter.id for letter in letters) == sorted(j.delivery_id for j in jobs)
    assert len(hub_dead_letters.sent) == len(jobs)
    # Every receive the hub used was a try (each of them with the inline retries).
    assert tried == {j.delivery_id: settings.max_receives * settings.attempts_per_invocation for j in jobs}


@pytest.mark.parametrize("stage", DEPLOYED_STAGES)
def test_every_inbound_message_gets_its_last_receive_even_when_left_untried(stage, tmp_path):
    """Ten messages whose media downloads use up each invocation (26 of 30 s) and fail until the
    last receive, where the process worker delivers what it has: none may reach the DLQ first."""
    queue, redriven = local_queue(tmp_path, "inbound")
    max_receives = hub_receives(stage, "inbound")
    finished: dict[str, int] = {}

    class MediaHeavy:
        def process_body(self, body, *, receive_count=1, seconds_left=None):
            simulated.invocation.spend(26)
            if receive_count < max_receives:
                raise TransientError("a media download timed out")
            finished[body] = receive_count
            return ProcessResult("contact_created")

    simulated = Lambda(queue, workers(inbound_queue=lambda: queue, processor=MediaHeavy), "inbound", "process_inbound")

    with time_machine.travel(datetime(2026, 1, 1, tzinfo=timezone.utc), tick=False) as traveller:
        queue.send([OutgoingMessage(body=f"m{i}", group=f"sender-{i}", dedupe_id=f"m{i}") for i in range(10)])
        simulated.drain(traveller)

    assert redriven.depth() == 0
    assert sorted(finished) == sorted(f"m{i}" for i in range(10))


@pytest.mark.parametrize("stage", DEPLOYED_STAGES)
def test_a_message_is_never_dead_lettered_without_being_tried(stage, tmp_path):
    """The send worker's receives, as the deliver worker's: ten messages to a provider that is down
    and slow (15 s per call) are each tried on every receive until the worker gives up and writes
    the dead letter (`kind: message`) itself; SQS's redrive never takes one first."""
    from chalicelib.domain.models import Channel
    from chalicelib.domain.outbound import OutboundMessage
    from chalicelib.service.messages import outbound_contact, queued
    from chalicelib.service.send_worker import SendWorker

    queue, redriven = local_queue(tmp_path, "outbound")
    store, hub_dead_letters = SqliteStore(":memory:"), MemoryQueue("outbound-dlq")
    tried: dict[str, int] = {}

    class SlowAndDown:
        def send(self, message):
            tried[message.id] = tried.get(message.id, 0) + 1
            simulated.invocation.spend(15)
            raise RetryableDeliveryError("503 from the provider")

    settings = load_config(ROOT / "chalicelib" / "conf" / f"{stage}.yaml").delivery
    clock = Clock()
    worker = SendWorker(store=store, senders={"twilio": SlowAndDown()}.get, dead_letters=hub_dead_letters,
                        settings=settings, clock=clock, sleep=lambda seconds: simulated.invocation.spend(seconds),
                        breakers=CircuitBreakers(failure_threshold=10**6))
    simulated = Lambda(queue, workers(outbound_queue=lambda: queue, send_worker=lambda: worker), "outbound", "send")
    messages = [OutboundMessage(id=f"ct_{i}", customer_id=f"cus_{i}", case_id=f"case_{i}", channel=Channel.SMS,
                                provider="twilio", account="+14155550100", to=f"+1415555{i:04d}", text="Hallo",
                                origin="api:test", queued_at=clock()) for i in range(10)]
    for message in messages:
        store.commit_outbound(outbound_contact(message, clock()))

    with time_machine.travel(datetime(2026, 1, 1, tzinfo=timezone.utc), tick=False) as traveller:
        queue.send([queued(message) for message in messages])
        simulated.drain(traveller)

    assert redriven.depth() == 0, "SQS took messages to the DLQ that the send worker never recorded"
    letters = store.list_dead_letters(destination="outbound", limit=100).items
    assert sorted(letter.subject_id for letter in letters) == sorted(m.id for m in messages)
    assert len(hub_dead_letters.sent) == len(messages)
    assert {store.get_contact(m.id).status.value for m in messages} == {"failed"}
    assert tried == {m.id: settings.max_receives * settings.attempts_per_invocation for m in messages}
