"""The Chalice app: registers the HTTP blueprints and the queue workers. No logic lives here."""

from chalice.app import SQSEvent

from chalicelib.api.application import HubApp
from chalicelib.api.consumer import consumer
from chalicelib.api.media import media
from chalicelib.api.system import system
from chalicelib.api.webhooks import BINARY_REQUEST_TYPES, webhooks
from chalicelib.api.workers import (
    DELIVER_RESERVE_SECONDS,
    PROCESS_RESERVE_SECONDS,
    SES_INBOUND_RESERVE_SECONDS,
    deliver,
    process_inbound,
    ses_inbound,
    sqs_batch,
)
from chalicelib.bootstrap import get_hub
from chalicelib.service.media_types import MEDIA_BINARY_TYPES
from chalicelib.settings import Settings

app = HubApp(app_name="omnichannel-hub")
app.register_blueprint(webhooks)
app.register_blueprint(consumer)
app.register_blueprint(media)
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
    sqs_batch(event, get_hub().inbound_queue, process_inbound, reserve_seconds=PROCESS_RESERVE_SECONDS)


@app.on_sqs_message(queue=_settings.queue_name("delivery"), batch_size=10, name="deliver")
def deliver_queue(event: SQSEvent) -> None:
    sqs_batch(event, get_hub().delivery_queue, deliver, reserve_seconds=DELIVER_RESERVE_SECONDS)


# SES stores inbound mail in the bucket; S3 announces each object on a standard queue (S3 cannot
# notify FIFO queues, and `chalice package` cannot express `on_s3_event`): docs/channels/ses.md.
@app.on_sqs_message(queue=_settings.queue_name("ses-inbound", fifo=False), batch_size=10, name="ses_inbound")
def ses_inbound_queue(event: SQSEvent) -> None:
    sqs_batch(event, get_hub().ses_inbound_queue, ses_inbound, reserve_seconds=SES_INBOUND_RESERVE_SECONDS)
