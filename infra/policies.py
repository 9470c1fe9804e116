"""Write each Lambda function's IAM policy for each deployed stage: `.chalice/policy-<stage>-<function>.json`.

    python infra/policies.py            # every deployed stage of .chalice/config.json (dev, prod)
    python infra/policies.py --stage qa
    python infra/policies.py --check    # exit 1 if a committed policy differs (the tests run this)

It also points each function of the stage at its file in `.chalice/config.json`
(`stages.<stage>.lambda_functions.<function>.iam_policy_file`; `autogen_policy` is off), leaving
the rest of the file as it was. No stage-wide policy is left, so a function added without a
policy of its own fails to deploy instead of sharing another's.

Each function gets what its code path calls, and nothing another function needs: the API function
(webhooks, destination callbacks, consumer API, media links, the send API) never reads a
destination's credentials, starts a Connect task, puts events, calls Comprehend or sends email;
the send function (channel providers) never reads a destination's credentials either, and reaches
only the table partitions its messages live in. Two-way destinations (`destinations[].callbacks`)
split their secrets: the API function reads the callback secrets (it verifies the vendor's
callbacks), the process function the destination's credentials when it relays agent replies (it
re-reads a reply from the vendor, or writes an internal note on the ticket), the deliver function
the credentials and never the callback secrets. What a function needs comes from two places:

- the code (the table below, statement by statement, each with a Sid saying what it is for);
- the stage's hub configuration: the secrets it references (each one by name, to the functions
  that read it), the routing rules' source, Comprehend, and the Amazon Connect and EventBridge
  destinations. Change the configuration, run this again, and deploy both.

Conventions it enforces (`PolicyError` otherwise): secrets live under the stage's prefix
(`/hub/<stage>/...` in SSM, `hub/<stage>/...` in Secrets Manager); what the API function reads
(channel secrets, destinations' callback secrets, the media link secret) lives in SSM Parameter
Store, because its role has no Secrets Manager access at all; an AppConfig rules source is configured by ids (IAM authorizes
AppConfig by the ids in its ARNs; names cannot be granted).

Every statement on the stage bucket carries `aws:ResourceAccount` = the deploying account: a bucket
ARN has no account field, so the name pattern alone would also match a bucket of that name in
someone else's account.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the hub's configuration model is needed
    sys.path.insert(0, str(ROOT))

CHALICE_DIR = ROOT / ".chalice"
CHALICE_CONFIG = CHALICE_DIR / "config.json"
CONF_DIR = ROOT / "chalicelib" / "conf"
APP_NAME = "omnichannel-hub"
#: Chalice's name for the REST API's function.
API = "api_handler"

#: The condition every statement on the stage bucket carries.
OWN_ACCOUNT = {"StringEquals": {"aws:ResourceAccount": "${aws:PrincipalAccount}"}}
#: The queues `GET /v1/status` reports the depth of (chalicelib/service/status.py).
STATUS_QUEUES = ("inbound", "delivery", "delivery-dlq", "outbound", "outbound-dlq", "events", "events-dlq")
#: What Lambda's event source mapping does with the function's role, and what the worker adds
#: (deleting what it finished, making what it did not try visible again).
CONSUME = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]
#: Every item-level DynamoDB action the store uses (TransactWriteItems is authorized per item as
#: PutItem / UpdateItem / DeleteItem); never Scan.
TABLE_READ_WRITE = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:PutItem",
                    "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"]
#: What the deliver worker's store calls: the delivery record and the erasure tombstone (GetItem),
#: the case with its external references (Query), deliveries, case refs and dead letters (PutItem).
#: A case ref is one transaction of two Puts (`Store.put_case_ref`): the case's REF#<destination>
#: item and the CASEREF#<destination>:<ref> link callbacks find the case by, unconditional both.
TABLE_DELIVER = ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem"]

#: What the send worker's store calls (service/send_worker.py and what it calls back): the
#: outbound contact and its timeline copy (Query, PutItem), the provider's message id link
#: (PutItem), the thread key of the Message-ID SES gave an email (PutItem, THREAD#), the customer
#: and case of message events (GetItem, Query), early status reports
#: (Query), the web chat outbox (GetItem, PutItem), an opt-out on the customer (PutItem) and the
#: dead letter (PutItem). Never a batch, never an update or a Scan.
TABLE_SEND = ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem"]
#: The partitions those calls reach (the key layout of chalicelib/adapters/store/dynamodb.py).
#: `dynamodb:LeadingKeys` is checked per item, so a transaction's every item must be in one.
SEND_PARTITIONS = ["CONTACT#*", "CUST#*", "CASE#*", "SENT#*", "STATUS#*", "OUTBOX#*", "THREAD#*", "DEADLETTERS"]

#: A pull entry's reads, by entry name: where its announcements point to (infra/stateful.yaml
#: announces objects under this bucket prefix on the entry's queue).
PULL_ENTRY_PREFIXES = {"ses-inbound": "ses-inbound/"}

#: AppConfig's ids (application, environment, configuration profile): 4 to 7 lower-case letters
#: and digits. A name such as hub-prod never matches (it has a hyphen).
_APPCONFIG_ID = re.compile(r"[a-z0-9]{4,7}")


class PolicyError(Exception):
    """The stage configuration asks for something a policy cannot grant (the message says what)."""


# --- the pieces ----------------------------------------------------------------------------------


def statement(sid: str, actions: Iterable[str], resources: Iterable[str], condition: dict | None = None) -> dict:
    out: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": sorted(set(actions)),
                           "Resource": sorted(set(resources))}
    if condition:
        out["Condition"] = condition
    return out


def segment_query_statement(stage: Stage) -> dict:
    """What `Store.segment_page` needs beside the table's statement: Query on the segment indexes
    (a broadcast's pages, `events.fanout_page_size` customer ids per Query). Only for functions
    that page segments: the events worker, and the API when explain samples a segment."""
    return statement("SegmentIndexes", ["dynamodb:Query"], [stage.segment_indexes])


class Stage:
    """The names of one stage's resources, as infra/stateful.yaml and Chalice make them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.table = f"arn:aws:dynamodb:*:*:table/hub-{name}"
        #: The table's segment indexes (segment1, segment2): a Query on an index is authorized on
        #: the index's ARN, which the table's does not cover.
        self.segment_indexes = f"{self.table}/index/segment*"
        # hub-<stage>-<12-digit account>-<region>
        self.bucket = f"arn:aws:s3:::hub-{name}-????????????-*"

    def queue(self, role: str, *, fifo: bool = True) -> str:
        return f"arn:aws:sqs:*:*:{self.queue_name(role, fifo=fifo)}"

    def queue_name(self, role: str, *, fifo: bool = True) -> str:
        return f"hub-{self.name}-{role}" + (".fifo" if fifo else "")

    def objects(self, prefix: str) -> str:
        return f"{self.bucket}/{prefix}*"

    def queue_bodies(self, role: str) -> str:
        """Claim-checked bodies of a queue's messages: `queue/<queue name>/` (adapters/queue/base.py)."""
        return self.objects(f"queue/{self.queue_name(role)}/")

    def timer_statements(self) -> list[dict]:
        """Arming and cancelling case timers: one-time schedules in the stage's group, created
        with the stage's scheduler role (infra/stateful.yaml, `TimersSchedulerRole`)."""
        return [statement("TimersSchedules", ["scheduler:CreateSchedule", "scheduler:DeleteSchedule"],
                          [f"arn:aws:scheduler:*:*:schedule/hub-{self.name}/*"]),
                statement("TimersPassRole", ["iam:PassRole"], [f"arn:aws:iam::*:role/hub-{self.name}-timers-scheduler"],
                          {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}})]

    def logs(self, function: str) -> Iterable[dict]:
        name = f"{APP_NAME}-{self.name}" + ("" if function == API else f"-{function}")
        return [statement("Logs", ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                          [f"arn:aws:logs:*:*:log-group:/aws/lambda/{name}:*"])]

    def missing_key_is_404(self) -> dict:
        # Without ListBucket, S3 answers a missing key with AccessDenied, which the blob store and
        # the SES pull would take for a transient failure and retry.
        return statement("BucketMissingKeyIs404", ["s3:ListBucket"], [self.bucket], OWN_ACCOUNT)


TRACING = statement("Tracing", ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], ["*"])


# --- from the configuration ----------------------------------------------------------------------


def secret_references(section: Any) -> list[str]:
    """The ssm: and secretsmanager: references in a configuration section (env: needs no grant)."""
    from collections.abc import Mapping

    from pydantic import BaseModel, SecretStr

    if isinstance(section, SecretStr):
        value = section.get_secret_value()
        return [value] if value.startswith(("ssm:", "secretsmanager:")) else []
    if isinstance(section, BaseModel):
        return [r for name in type(section).model_fields for r in secret_references(getattr(section, name))]
    if isinstance(section, Mapping):  # `config.channels` is a mapping that types each section on read
        return [r for value in section.values() for r in secret_references(value)]
    if isinstance(section, (list, tuple)):
        return [r for value in section for r in secret_references(value)]
    return []


def secret_statements(stage: Stage, sid: str, references: Sequence[str], *, ssm_only: str | None = None) -> list[dict]:
    """Read access to exactly these secrets. `ssm_only`: why this function may not read Secrets
    Manager (the references must then all be SSM parameters)."""
    parameters, secrets = set(), set()
    for reference in references:
        scheme, name = reference.split(":", 1)
        if scheme == "ssm":
            if not name.startswith(f"/hub/{stage.name}/"):
                raise PolicyError(f"{reference}: SSM parameters of stage {stage.name} live under /hub/{stage.name}/")
            parameters.add(f"arn:aws:ssm:*:*:parameter{name}")
        else:
            if ssm_only:
                raise PolicyError(f"{reference}: {ssm_only}; keep it in SSM Parameter Store (ssm:/hub/{stage.name}/...)")
            if not name.startswith(f"hub/{stage.name}/"):
                raise PolicyError(f"{reference}: secrets of stage {stage.name} live under hub/{stage.name}/")
            # Secrets Manager appends a dash and six random characters to the secret's name.
            secrets.add(f"arn:aws:secretsmanager:*:*:secret:{name}-??????")
    out = []
    if parameters:
        out.append(statement(f"{sid}Parameters", ["ssm:GetParameter"], parameters))
    if secrets:
        out.append(statement(f"{sid}Secrets", ["secretsmanager:GetSecretValue"], secrets))
    return out


def callback_settings(destination) -> Any:
    """A destination's `callbacks` section (two-way sync), or None for a one-way destination."""
    return getattr(destination.settings, "callbacks", None)


def callback_secret_references(config) -> list[str]:
    """What the API function verifies destinations' callbacks with (`destinations[].callbacks`,
    every secret field of the vendor's callback settings)."""
    return [r for d in config.destinations for r in secret_references(callback_settings(d))]


def credential_references(destinations: Iterable) -> list[str]:
    """The destinations' own credentials (API tokens, signing secrets of what the hub sends):
    every secret of their settings except the callback section's."""
    out = []
    for destination in destinations:
        settings = destination.settings
        out += [r for name in type(settings).model_fields if name != "callbacks"
                for r in secret_references(getattr(settings, name))]
    return out


def relaying_destinations(config) -> list:
    """Two-way destinations whose agent replies the process worker relays: it may read a reply
    back from the vendor (`VendorCallbacks.confirm`) or write an internal note on the ticket
    (`note`), both through the destination's API with its credentials."""
    return [d for d in config.destinations if (c := callback_settings(d)) is not None and c.replies]


def rules_source_statements(stage: Stage, config, *, source=None, sid: str = "RoutingRules",
                            key: str = "routing.source") -> list[dict]:
    """Reading a rules document, when it lives on AWS (docs/routing-sources.md): the routing
    rules' (`routing.source`), or the event rules' (`source=config.events.source`)."""
    source = source or config.routing.source
    if source.type == "s3":
        return [statement(f"{sid}Object", ["s3:GetObject"], [f"arn:aws:s3:::{source.bucket}/{source.key}"],
                          OWN_ACCOUNT),
                statement(f"{sid}MissingIs404", ["s3:ListBucket"], [f"arn:aws:s3:::{source.bucket}"],
                          OWN_ACCOUNT)]
    if source.type == "ssm":
        name = source.parameter
        arn = name if name.startswith("arn:") else f"arn:aws:ssm:*:*:parameter/{name.lstrip('/')}"
        return [statement(f"{sid}Parameter", ["ssm:GetParameter"], [arn])]
    if source.type == "appconfig":
        ids = (source.application, source.environment, source.profile)
        if not all(_APPCONFIG_ID.fullmatch(value) for value in ids):
            raise PolicyError(
                f"{key}: IAM grants AppConfig by id, not by name: configure the ids of the application "
                f"(hub-{stage.name}), environment ({stage.name}) and profile, e.g. from "
                "`aws appconfig list-applications`"
            )
        application, environment, profile = ids
        return [statement(f"{sid}AppConfig",
                          ["appconfig:StartConfigurationSession", "appconfig:GetLatestConfiguration"],
                          [f"arn:aws:appconfig:*:*:application/{application}/environment/{environment}"
                           f"/configuration/{profile}"])]
    return []


def ses_sending_statements(config) -> list[dict]:
    """SES `SendEmail` from exactly the configured sending addresses (`channels.ses.sending_addresses`).

    SES authorizes a send on the identity it sends from: the address when it is verified on its
    own, else its domain; so a mailbox grants both, a `@domain` entry the domain and its
    addresses. `ses:FromAddress` keeps a domain identity from sending as any other mailbox of
    the domain. SES v2 `SendEmail` with raw content is authorized as `ses:SendRawEmail` as well
    as `ses:SendEmail` (as observed by SDK users; AWS's reference names only the latter), so both.
    The configuration set, when one is named, is a resource of the call too.
    """
    ses = config.channels.get("ses")
    addresses = list(getattr(ses, "sending_addresses", None) or [])
    if not addresses:
        return []
    identities, senders = set(), set()
    for address in addresses:
        if address.startswith("@"):
            domain = address[1:]
            identities |= {domain, f"*@{domain}"}
            senders.add(f"*@{domain}")
        else:
            identities |= {address, address.rsplit("@", 1)[1]}
            senders.add(address)
    resources = {f"arn:aws:ses:*:*:identity/{identity}" for identity in identities}
    if ses.configuration_set_name:
        resources.add(f"arn:aws:ses:*:*:configuration-set/{ses.configuration_set_name}")
    return [statement("ChannelSesSend", ["ses:SendEmail", "ses:SendRawEmail"], resources,
                      {"StringLike": {"ses:FromAddress": sorted(senders)}})]


def comprehend_statements(config) -> list[dict]:
    comprehend = config.enrichment.comprehend
    actions = [action for enabled, action in ((comprehend.sentiment, "comprehend:DetectSentiment"),
                                              (comprehend.language, "comprehend:DetectDominantLanguage")) if enabled]
    if not comprehend.enabled or not actions:
        return []
    # Comprehend's real-time detection has no resource to name.
    return [statement("EnrichmentComprehend", actions, ["*"])]


def destination_statements(config) -> list[dict]:
    """Amazon Connect tasks and EventBridge events, for exactly the configured instances and buses."""
    connect, buses = set(), {}
    for destination in config.destinations:
        settings = destination.settings
        if destination.type == "amazon_connect":
            instance = settings.instance_id
            if instance.startswith("arn:"):
                _, partition, _, region, account, rest = instance.split(":", 5)
                base = f"arn:{partition}:connect:{settings.region or region}:{account}:{rest}"
            else:
                base = f"arn:aws:connect:{settings.region or '*'}:*:instance/{instance}"
            # A task template names its flow; chained tasks refer to the case's earlier contact.
            connect.add(f"{base}/contact-flow/{settings.contact_flow_id or '*'}")
            if settings.task_template_id:
                connect.add(f"{base}/task-template/{settings.task_template_id}")
            connect.add(f"{base}/contact/*")
        elif destination.type == "eventbridge":
            bus = settings.event_bus_name
            arn = bus if bus.startswith("arn:") else f"arn:aws:events:{settings.region or '*'}:*:event-bus/{bus}"
            buses.setdefault(settings.source, set()).add(arn)
    out = []
    if connect:
        out.append(statement("DestinationAmazonConnect", ["connect:StartTaskContact"], connect))
    for index, (source, arns) in enumerate(sorted(buses.items())):
        out.append(statement(f"DestinationEventBridge{index or ''}", ["events:PutEvents"], arns,
                             {"StringEquals": {"events:source": source}}))
    return out


# --- the functions -------------------------------------------------------------------------------


def api_policy(stage: Stage, config) -> list[dict]:
    """Webhooks (verify with the channels' secrets, enqueue), the consumer API and media links."""
    return [
        *stage.logs(API),
        # Every accepted webhook or destination callback becomes one send; nothing else of the queue.
        statement("WebhooksEnqueue", ["sqs:SendMessage"], [stage.queue("inbound")]),
        # Consumer API: replays of dead letters, released parked contacts, merge/unmerge/erasure
        # announcements to destinations.
        statement("ConsumerApiQueuesDeliveries", ["sqs:SendMessage"], [stage.queue("delivery")]),
        # POST /v1/messages (and replays of dead messages): one send per accepted message.
        statement("SendApiQueuesMessages", ["sqs:SendMessage"], [stage.queue("outbound")]),
        # POST /v1/events: one batch of sends per accepted request.
        statement("EventsApiQueuesEvents", ["sqs:SendMessage"], [stage.queue("events")]),
        # GET /v1/status: the depth of every hub queue and dead-letter queue (the console's Health).
        statement("StatusQueueDepths", ["sqs:GetQueueAttributes"],
                  [stage.queue(role) for role in STATUS_QUEUES]),
        # Consumer API reads and edits customers, contacts, merges, dead letters, unhandled items,
        # erasure; the send API's addressee, idempotency key (remember), outbound contact and
        # thread keys; the web chat outbox the widget polls; the health check's GetItem; webhook
        # replay tokens (a conditional PutItem).
        statement("Table", TABLE_READ_WRITE, [stage.table]),
        # Claim-checked bodies of what it sends (an email webhook over 200 KB, a large replay or
        # message).
        statement("QueueBodiesSent", ["s3:PutObject"],
                  [stage.queue_bodies("inbound"), stage.queue_bodies("delivery"), stage.queue_bodies("outbound"),
                   stage.queue_bodies("events")],
                  OWN_ACCOUNT),
        # Media links (served or redirected to a presigned URL), the GDPR export of offloaded raw
        # payloads, and erasure of both.
        statement("CustomerFiles", ["s3:GetObject", "s3:DeleteObject"],
                  [stage.objects("media/"), stage.objects("raw/")], OWN_ACCOUNT),
        stage.missing_key_is_404(),
        # Webhook verification (channels.*) and media link signing (media.link_secret).
        *secret_statements(stage, "WebhookSecrets", [*secret_references(config.channels),
                                                     *secret_references(config.media.link_secret)],
                           ssm_only="the API function verifies webhooks and media links with it, and its role "
                                    "reads no Secrets Manager secret (destination credentials live there)"),
        # POST /callbacks/{destination}: the vendors' signing or shared secrets
        # (destinations[].callbacks); never the destinations' credentials.
        *secret_statements(stage, "CallbackSecrets", callback_secret_references(config),
                           ssm_only="the API function verifies destination callbacks with it "
                                    "(destinations[].callbacks.secrets), and its role reads no Secrets Manager "
                                    "secret (destination credentials live there)"),
        # POST /v1/routing/explain routes by the rules in force; POST /v1/events/explain likewise.
        *rules_source_statements(stage, config),
        *event_rules_statements(stage, config),
        TRACING,
    ]


def event_rules_statements(stage: Stage, config) -> list[dict]:
    """Reading the event rules' document (`events.source`), where events are processed and explained."""
    return rules_source_statements(stage, config, source=config.events.source, sid="EventRules", key="events.source")


def process_policy(stage: Stage, config) -> list[dict]:
    """Resolve, case, enrich, route, fan out: store, delivery queue, media into the bucket; and
    destination callbacks' items: agents' replies sent, tickets' status on the case."""
    return [
        *stage.logs("process_inbound"),
        statement("InboundQueueConsume", CONSUME, [stage.queue("inbound")]),
        # Contacts' deliveries, case events (a ticket closed or reopened the case), refused
        # agent replies' message.status and message.undelivered.
        statement("DeliveriesQueue", ["sqs:SendMessage"], [stage.queue("delivery")]),
        # Routing's auto-replies and agents' replies go out through the send path (MessageService.send).
        statement("AutoRepliesQueue", ["sqs:SendMessage"], [stage.queue("outbound")]),
        # Claims, customers, contacts and cases (transactions), merges, statuses, unhandled items;
        # status reports matched to the hub's messages (SENT# links, the outbound contact), opt-outs
        # on the customer's consent ledger; auto-replies' and agents' replies' outbound contacts
        # (a conditional PutItem); a callback's ticket to its case (the CASEREF# link, the case's
        # REF# items) and the ticket's state written with the case and customer.
        statement("Table", TABLE_READ_WRITE, [stage.table]),
        # Read its messages' claim-checked bodies and replace them with a "released" marker.
        statement("InboundQueueBodies", ["s3:GetObject", "s3:PutObject"], [stage.queue_bodies("inbound")], OWN_ACCOUNT),
        statement("QueueBodiesSent", ["s3:PutObject"],
                  [stage.queue_bodies("delivery"), stage.queue_bodies("outbound")], OWN_ACCOUNT),
        # Downloaded attachments (and presigned links to them), and raw payloads too large for an item.
        statement("CustomerFiles", ["s3:PutObject", "s3:GetObject"], [stage.objects("media/")], OWN_ACCOUNT),
        statement("RawPayloads", ["s3:PutObject"], [stage.objects("raw/")], OWN_ACCOUNT),
        stage.missing_key_is_404(),
        # Media download credentials (media.sources.*) and the link secret.
        *secret_statements(stage, "MediaSecrets", secret_references(config.media)),
        # Agents' replies are read back from the vendor, and refused ones noted on the ticket,
        # with the credentials of the destinations that relay replies.
        *secret_statements(stage, "RelayingDestinationSecrets", credential_references(relaying_destinations(config))),
        *rules_source_statements(stage, config),
        *comprehend_statements(config),
        # A new case's SLA and auto-close timers, a rule's follow-up.
        *stage.timer_statements(),
        TRACING,
    ]


def deliver_policy(stage: Stage, config) -> list[dict]:
    """Deliver jobs to destinations: their credentials, Connect, EventBridge, the dead letters."""
    return [
        *stage.logs("deliver"),
        statement("DeliveryQueueConsume", CONSUME, [stage.queue("delivery")]),
        # A job the hub gives up on goes to the DLQ (alarms watch its depth) and the store.
        statement("DeadLettersSend", ["sqs:SendMessage"], [stage.queue("delivery-dlq")]),
        statement("Table", TABLE_DELIVER, [stage.table]),
        # A dead letter is written in one transaction with a conditional delete of the customer's
        # erasure tombstone key (refused when the customer was erased meanwhile; IAM has no
        # ConditionCheck permission). Only customer partitions, and the delete never matches an item.
        statement("DeadLetterErasureGuard", ["dynamodb:DeleteItem"], [stage.table],
                  {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["CUST#*"]}}),
        # Its jobs' claim-checked bodies (redriven ones come from the DLQ's prefix), released with a
        # marker; dead letters' bodies.
        statement("DeliveryQueueBodies", ["s3:GetObject", "s3:PutObject"],
                  [stage.queue_bodies("delivery"), stage.queue_bodies("delivery-dlq")], OWN_ACCOUNT),
        stage.missing_key_is_404(),
        # The destinations' credentials; not their callback secrets (the API function's).
        *secret_statements(stage, "DestinationSecrets", credential_references(config.destinations)),
        *destination_statements(config),
        TRACING,
    ]


def send_policy(stage: Stage, config) -> list[dict]:
    """Send queued messages through the channel providers: their credentials (SSM), SES, the
    web chat outbox; the outcome on the outbound contact; message events to destinations."""
    return [
        *stage.logs("send"),
        statement("OutboundQueueConsume", CONSUME, [stage.queue("outbound")]),
        # A message the hub gives up on goes to the DLQ (alarms watch its depth) and the store.
        statement("DeadLettersSend", ["sqs:SendMessage"], [stage.queue("outbound-dlq")]),
        # `message.sent` / `message.status` jobs for the destinations that take them.
        statement("MessageEventsQueue", ["sqs:SendMessage"], [stage.queue("delivery")]),
        statement("Table", TABLE_SEND, [stage.table],
                  {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": SEND_PARTITIONS}}),
        # The dead letter's erasure guard, as the deliver worker's (a conditional delete of the
        # customer's tombstone key that never matches an item).
        statement("DeadLetterErasureGuard", ["dynamodb:DeleteItem"], [stage.table],
                  {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["CUST#*"]}}),
        # Its messages' claim-checked bodies (redriven ones come from the DLQ's prefix), released
        # with a marker; dead letters' and message events' bodies.
        statement("OutboundQueueBodies", ["s3:GetObject", "s3:PutObject"],
                  [stage.queue_bodies("outbound"), stage.queue_bodies("outbound-dlq")], OWN_ACCOUNT),
        statement("DeliveryQueueBodiesSent", ["s3:PutObject"], [stage.queue_bodies("delivery")], OWN_ACCOUNT),
        stage.missing_key_is_404(),
        # The providers' credentials (channels.*): in SSM, like every channel secret.
        *secret_statements(stage, "ChannelSecrets", secret_references(config.channels),
                           ssm_only="channel secrets live in SSM Parameter Store (the API function verifies "
                                    "webhooks with them)"),
        *ses_sending_statements(config),
        TRACING,
    ]


def events_policy(stage: Stage, config) -> list[dict]:
    """Business events: rules over each event, broadcast fan-out through the events queue in
    pages, proactive messages (the send path), case actions, events forwarded to destinations."""
    return [
        *stage.logs("process_events"),
        statement("EventsQueueConsume", CONSUME, [stage.queue("events")]),
        # Broadcast pages and their members, deferred messages and fired timers go back on the
        # events queue; notify queues messages (MessageService.send); forwarded events and case
        # events go to the destinations.
        statement("EventsQueueSend", ["sqs:SendMessage"], [stage.queue("events")]),
        statement("NotifyQueue", ["sqs:SendMessage"], [stage.queue("outbound")]),
        statement("DeliveriesQueue", ["sqs:SendMessage"], [stage.queue("delivery")]),
        # Done markers, customers, cases, event contacts, parked contacts, outbound contacts and
        # unhandled events; a broadcast's segment pages are Queries on the segment indexes.
        statement("Table", TABLE_READ_WRITE, [stage.table]),
        statement("Segments", ["dynamodb:Query"], [f"{stage.table}/index/segment*"]),
        # Its messages' claim-checked bodies (redriven ones come from the DLQ's prefix), released
        # with a marker; the bodies of what it sends on.
        statement("EventsQueueBodies", ["s3:GetObject", "s3:PutObject"],
                  [stage.queue_bodies("events"), stage.queue_bodies("events-dlq")], OWN_ACCOUNT),
        statement("QueueBodiesSent", ["s3:PutObject"],
                  [stage.queue_bodies("outbound"), stage.queue_bodies("delivery")], OWN_ACCOUNT),
        stage.missing_key_is_404(),
        *event_rules_statements(stage, config),
        # Cases opened by event rules, follow-ups, and messages deferred to the end of quiet hours.
        *stage.timer_statements(),
        TRACING,
    ]


def timers_policy(stage: Stage, config) -> list[dict]:
    """EventBridge Scheduler's target: put the fired timer on the events queue."""
    return [
        *stage.logs("timers"),
        statement("EventsQueueSend", ["sqs:SendMessage"], [stage.queue("events")]),
        statement("EventsQueueBodiesSent", ["s3:PutObject"], [stage.queue_bodies("events")], OWN_ACCOUNT),
        TRACING,
    ]


def eventbridge_policy(stage: Stage, config) -> list[dict]:
    """Business events from an EventBridge bus: validate and enqueue them; keep what can never be
    accepted as an unhandled item (one conditional PutItem in its day's partition)."""
    return [
        *stage.logs("eventbridge_events"),
        statement("EventsQueueSend", ["sqs:SendMessage"], [stage.queue("events")]),
        statement("EventsQueueBodiesSent", ["s3:PutObject"], [stage.queue_bodies("events")], OWN_ACCOUNT),
        statement("UnhandledEvents", ["dynamodb:PutItem"], [stage.table],
                  {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["UNHANDLED#*"]}}),
        TRACING,
    ]


def pull_policy(stage: Stage, config, name: str, provider: str, entry) -> list[dict]:
    """A provider's pull entry: read what each announcement points to, enqueue it."""
    if name not in PULL_ENTRY_PREFIXES:
        raise PolicyError(f"pull entry {name}: add what it reads to PULL_ENTRY_PREFIXES in infra/policies.py")
    return [
        *stage.logs(entry.function_name),
        statement("AnnouncementsConsume", CONSUME, [stage.queue(name, fifo=entry.fifo)]),
        statement("InboundQueueSend", ["sqs:SendMessage"], [stage.queue("inbound")]),
        statement("InboundQueueBodiesSent", ["s3:PutObject"], [stage.queue_bodies("inbound")], OWN_ACCOUNT),
        statement("AnnouncedObjects", ["s3:GetObject"], [stage.objects(PULL_ENTRY_PREFIXES[name])], OWN_ACCOUNT),
        stage.missing_key_is_404(),
        *secret_statements(stage, "ChannelSecrets", secret_references(config.channels.get(provider))),
        TRACING,
    ]


def policies_for(stage_name: str, config) -> dict[str, dict]:
    """Function name → its policy document, for `stage_name` with hub configuration `config`."""
    from chalicelib.adapters.channels.registry import PULL_ENTRIES

    stage = Stage(stage_name)
    statements = {API: api_policy(stage, config), "process_inbound": process_policy(stage, config),
                  "deliver": deliver_policy(stage, config), "send": send_policy(stage, config),
                  "process_events": events_policy(stage, config),
                  "eventbridge_events": eventbridge_policy(stage, config), "timers": timers_policy(stage, config)}
    for name, (provider, entry) in PULL_ENTRIES.items():
        statements[entry.function_name] = pull_policy(stage, config, name, provider, entry)
    return {function: {"Version": "2012-10-17", "Statement": items} for function, items in statements.items()}


def policy_file(stage: str, function: str) -> str:
    return f"policy-{stage}-{function}.json"


def render(policy: dict) -> str:
    return json.dumps(policy, indent=2) + "\n"


def deployed_stages(chalice_config: dict) -> list[str]:
    """The stages of .chalice/config.json that run on AWS (not the embedded `local`)."""
    return [name for name, stage in chalice_config.get("stages", {}).items()
            if stage.get("environment_variables", {}).get("HUB_RUNTIME", "aws") != "embedded"]


def wire(chalice_config: dict, stage: str, functions: Iterable[str]) -> dict:
    """`chalice_config` with each function of `stage` pointed at its own policy file."""
    stage_config = chalice_config.setdefault("stages", {}).setdefault(stage, {})
    stage_config.pop("iam_policy_file", None)
    per_function = stage_config.setdefault("lambda_functions", {})
    for function in functions:
        per_function.setdefault(function, {})["iam_policy_file"] = policy_file(stage, function)
    return chalice_config


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", action="append", help="stage (repeatable; default: every deployed stage)")
    parser.add_argument("--check", action="store_true", help="compare with the committed files, write nothing")
    args = parser.parse_args(argv)
    from chalicelib.errors import ConfigError
    from chalicelib.hubconfig import load_config

    chalice_text = CHALICE_CONFIG.read_text()
    chalice_config = json.loads(chalice_text)
    differing = []
    for stage in args.stage or deployed_stages(chalice_config):
        try:
            config = load_config(CONF_DIR / f"{stage}.yaml", allow_inline_secrets=False)
            policies = policies_for(stage, config)
        except (ConfigError, PolicyError) as exc:
            print(f"error: stage {stage}: {exc}", file=sys.stderr)
            return 1
        for function, policy in policies.items():
            path = CHALICE_DIR / policy_file(stage, function)
            text = render(policy)
            if not path.exists() or path.read_text() != text:
                differing.append(path.name)
                if not args.check:
                    path.write_text(text)
                    print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
        wire(chalice_config, stage, policies)
    wired = json.dumps(chalice_config, indent=2) + "\n"
    if wired != chalice_text:
        differing.append(CHALICE_CONFIG.name)
        if not args.check:
            CHALICE_CONFIG.write_text(wired)
            print(f"wrote {CHALICE_CONFIG.relative_to(ROOT)}", file=sys.stderr)
    if args.check and differing:
        print(f"not what infra/policies.py generates: {', '.join(differing)}; run python infra/policies.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
