"""The Chalice app: registers the HTTP blueprints and the queue workers. No logic lives here."""

import gc

# Importing the hub creates several hundred thousand objects (modules, classes, pydantic schemas)
# that live as long as the process, and the cyclic garbage collector, triggered by allocation
# counts, walks them again and again while they are created: about 40 ms of a Lambda cold start,
# for nothing to free. Collection stays off until the app is built; `gc.freeze()` then moves what
# the import made out of every later collection's way (the technique CPython documents for
# pre-fork servers). `bench startup` gives its dependency floor the same treatment.
gc.disable()

from chalice.app import SQSEvent  # noqa: E402 (after the collector is paused)

from chalicelib.adapters.channels.registry import PULL_ENTRIES
from chalicelib.api.application import HubApp
from chalicelib.api.callbacks import callbacks
from chalicelib.api.console import console
from chalicelib.api.consumer import consumer
from chalicelib.api.events import events
from chalicelib.api.media import media
from chalicelib.api.messages import messages
from chalicelib.api.operator import operator
from chalicelib.api.pages import pages
from chalicelib.api.reference import reference
from chalicelib.api.system import system
from chalicelib.api.webhooks import BINARY_REQUEST_TYPES, webhooks
from chalicelib.bootstrap import get_hub
from chalicelib.service.media_types import MEDIA_BINARY_TYPES
from chalicelib.settings import Settings

app = HubApp(app_name="omnichannel-hub")
app.register_blueprint(webhooks)
app.register_blueprint(callbacks)
app.register_blueprint(consumer)
app.register_blueprint(events)
app.register_blueprint(media)
app.register_blueprint(messages)
app.register_blueprint(console)
app.register_blueprint(operator)
app.register_blueprint(reference)
app.register_blueprint(pages)
app.register_blueprint(system)

_settings = Settings.from_environ()
# Multipart webhooks arrive base64-encoded, so attachments keep their bytes. Downloaded attachments
# leave the embedded hub as bytes (GET /v1/media/...); text/* stays text, because the webhook
# acknowledgements are text/plain and Chalice refuses str bodies of binary types.
app.api.binary_types.extend(
    t for t in (*BINARY_REQUEST_TYPES, *MEDIA_BINARY_TYPES) if t not in app.api.binary_types
)


@app.on_sqs_message(queue=_settings.queue_name("inbound"), batch_size=10, name="process_inbound")
def process_inbound_queue(event: SQSEvent) -> None:
    get_hub().workers.consume("inbound", event)


# One delivery per invocation: a delivery may hold most of the 60 s (inline retries against a slow
# vendor), and every message a batch leaves untried spends a receive towards the DLQ. Groups are
# per destination and customer, so concurrency still follows the backlog.
@app.on_sqs_message(queue=_settings.queue_name("delivery"), batch_size=1, name="deliver")
def deliver_queue(event: SQSEvent) -> None:
    get_hub().workers.consume("delivery", event)


# One message per invocation, like deliveries: a send may retry inline against a slow provider.
# Groups are per customer and channel, so one customer's messages on a channel go out in order.
@app.on_sqs_message(queue=_settings.queue_name("outbound"), batch_size=1, name="send")
def send_queue(event: SQSEvent) -> None:
    get_hub().workers.consume("outbound", event)


# Ten units of the events queue per invocation: an event, a broadcast page (which enqueues at most
# a page of members), a member, a fired timer or a deferred message each take a few store calls.
@app.on_sqs_message(queue=_settings.queue_name("events"), batch_size=10, name="process_events")
def process_events_queue(event: SQSEvent) -> None:
    get_hub().workers.consume("events", event)


# Business events from an EventBridge bus the operator names (`infra/eventbridge-events.yaml`):
# Chalice's `on_cw_event` only subscribes to the default bus, so this is a plain function that
# the bus's rule targets. An event that can never be valid returns normally (kept as unhandled);
# a queue failure raises, so EventBridge retries it and then dead-letters it.
@app.lambda_function(name="eventbridge_events")
def eventbridge_events(event: dict, context: object) -> dict:
    return {"status": get_hub().event_intake.from_eventbridge(event)}


# EventBridge Scheduler's target for case timers and deferred messages (`adapters/timers/`): the
# fired timer goes onto the events queue; a failure raises, so Scheduler retries, then dead-letters.
@app.lambda_function(name="timers")
def timers(event: dict, context: object) -> None:
    get_hub().timer_endpoint.fire(event)


def _pull_worker(name: str):
    def consume(event: SQSEvent) -> None:
        get_hub().workers.consume(name, event)

    return consume


# One worker per provider's queue-fed way in (`PullEntry`). Chalice names a handler's Lambda
# entry point `app.<function name>`, so each is a module attribute of its own name.
for _name, (_provider, _entry) in PULL_ENTRIES.items():
    _handler = _pull_worker(_name)
    _handler.__name__ = _handler.__qualname__ = f"{_entry.function_name}_queue"
    globals()[_handler.__name__] = app.on_sqs_message(
        queue=_settings.queue_name(_name, fifo=_entry.fifo), batch_size=10, name=_entry.function_name,
    )(_handler)


if _settings.on_aws:
    # Every function's first request builds an AWS client: the SDK is imported with the app, while
    # collection is paused, rather than on that request.
    import boto3  # noqa: F401

# The app is built: its objects leave the collector's generations, and collection resumes.
gc.freeze()
gc.enable()
