"""Amazon Connect contact events, through an EventBridge API destination, as task status for the
hub's cases (https://docs.aws.amazon.com/connect/latest/adminguide/contact-events.html).

Connect publishes "Amazon Connect Contact Event"s (source `aws.connect`) on the default event bus
of the instance's region. A rule on them targets an EventBridge **API destination** that POSTs the
whole event, envelope and all, to `POST /callbacks/<destination>`; its **connection**
(`AuthorizationType: API_KEY`) adds the header `X-Hub-Callback-Secret` with the shared secret,
which is all that proves the request is the operator's: EventBridge signs nothing.

What the hub learns is the status of the tasks the connector started (`case_ref` = the task's
`ContactId`): queued, taken by an agent, done. Tasks have no customer-visible replies and the hub
cannot write notes on them, so there are no `AgentReply` items and `takes_notes` stays False.

Sources (tests/fixtures/callbacks/amazon_connect/README.md has the details): the envelope and the
`detail` fields `eventType`, `contactId`, `initialContactId`, `initiationMethod`, `queueInfo`,
`agentInfo` are in AWS's sample contact event [D]; AWS's samples spell some keys in two ways over
time (`agentInfo.agentArn` and `instanceArn` in the EventBridge schema, `AgentInfo.AgentArn` and
`instanceARN` in earlier admin-guide samples), so keys are read without regard to case.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar, Literal

from chalicelib.adapters.connectors.settings.amazon_connect import (  # noqa: F401 (re-exported)
    AmazonConnectCallbackSettings,
)
from chalicelib.adapters.callbacks.base import (
    SHARED_SECRET_HEADER,
    CallbackRequest,
    CallbackSetup,
    ParsedCallback,
    SetupStep,
    VendorCallbacks,
    event_digest,
    parse_time,
)
from chalicelib.domain.models import CaseStatusChange
from chalicelib.errors import ConfigError, MalformedPayloadError

#: The header the EventBridge connection (API_KEY) sends the shared secret in.
SECRET_HEADER = SHARED_SECRET_HEADER
SOURCE = "aws.connect"
DETAIL_TYPE = "Amazon Connect Contact Event"
#: The contact events the hub follows; every other type (INITIATED, CONNECTED_TO_SYSTEM,
#: CONTACT_DATA_UPDATED, AMD_DISABLED, and types AWS adds later) is ignored by name. AWS: "design
#: them to handle new fields and event types gracefully".
QUEUED, CONNECTED_TO_AGENT, DISCONNECTED, COMPLETED = "QUEUED", "CONNECTED_TO_AGENT", "DISCONNECTED", "COMPLETED"
FOLLOWED = (QUEUED, CONNECTED_TO_AGENT, DISCONNECTED, COMPLETED)
#: The connector starts tasks; voice calls and chats of the same instance are none of the hub's.
TASK_CHANNEL = "TASK"
#: A contact an agent transferred is a new contact; its `initialContactId` names the first one.
TRANSFER = "TRANSFER"
_INSTANCE_ARN = re.compile(r"^arn:aws[\w-]*:connect:[a-z0-9-]+:\d{12}:instance/[0-9a-fA-F-]{36}$")
#: What the created role may do: invoke this one API destination.
_ASSUME_EVENTS = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


class AmazonConnectCallbacks(VendorCallbacks):
    """Task status from Connect's contact events; no replies, no notes (tasks have neither)."""

    settings: AmazonConnectCallbackSettings
    takes_notes: ClassVar[bool] = False

    # --- request path ----------------------------------------------------------------------------

    def verify(self, request: CallbackRequest) -> None:
        self.require_shared_secret(request.header(SECRET_HEADER),
                                   carried_by=f"{SECRET_HEADER} header (the EventBridge connection's API key)")

    def parse(self, request: CallbackRequest) -> ParsedCallback:
        event = _envelope(request.body)
        parsed = ParsedCallback()
        detail_type = event.get("detail-type")
        if detail_type != DETAIL_TYPE:
            parsed.ignored.append(f"EventBridge event {detail_type!r} is not a contact event")
            return parsed
        detail = event.get("detail")
        if not isinstance(detail, dict):
            parsed.unhandled.append(self.unhandled("detail is not an object", event, request))
            return parsed
        event_type = _text(_field(detail, "eventType"))
        contact_id = _text(_field(detail, "contactId"))
        initial_id = _text(_field(detail, "initialContactId"))
        if event_type is None or (contact_id or initial_id) is None:
            missing = "detail.eventType" if event_type is None else "detail.contactId and detail.initialContactId"
            parsed.unhandled.append(self.unhandled(f"contact event without {missing}", event, request))
            return parsed
        skip = self._skip_reason(detail, event_type)
        if skip:
            parsed.ignored.append(skip)
            return parsed
        transferred = (_text(_field(detail, "initiationMethod")) or "").upper() == TRANSFER
        # A transfer continues the hub's task under a new contact id: its events count for the
        # contact it started from. Without a contactId (unconfirmed field names), the initial one.
        ticket = initial_id if (transferred and initial_id) or contact_id is None else contact_id
        parsed.items.append(CaseStatusChange(
            destination=self.destination,
            ticket=ticket,
            # EventBridge's own event id: unique per event and the same on every retry [D].
            event_id=_text(event.get("id")) or event_digest(ticket, event_type, event.get("time")),
            state=self._state(event_type, transferred),
            vendor_status=event_type,
            assignee=_assignee(detail, event_type),
            occurred_at=parse_time(event.get("time")),
            received_at=request.received_at,
        ))
        return parsed

    def _skip_reason(self, detail: dict, event_type: str) -> str | None:
        if event_type not in FOLLOWED:
            return f"contact event {event_type} not followed"
        channel = _text(_field(detail, "channel"))
        if channel is not None and channel.upper() != TASK_CHANNEL:
            return f"{channel} contact, not a task"
        instance = _event_instance(detail)
        if instance is not None and instance != self.connector.settings.instance.lower():
            return f"contact of another instance ({instance})"
        return None

    def _state(self, event_type: str, transferred: bool) -> Literal["open", "closed"] | None:
        if event_type == COMPLETED or event_type == self.settings.closing_event:
            return "closed"
        if transferred and event_type in (QUEUED, CONNECTED_TO_AGENT):
            # The transferring agent's COMPLETED may have closed the case; the work goes on.
            return "open"
        return None

    # --- operator --------------------------------------------------------------------------------

    def setup(self) -> CallbackSetup:
        names = self._names()
        region = self.connector.settings.instance_region or "<the instance's region>"
        pattern = json.dumps(self.event_pattern(), indent=2)
        parameters = " ".join([
            f"Destination={self.destination}", f"CallbackUrl={self.callback_url()}",
            f"InstanceArn={self._instance_arn()}", "CallbackSecret=<callbacks.secrets[0]>",
        ])
        steps = [
            SetupStep("EventBridge connection", {
                "Name": names["connection"], "AuthorizationType": "API_KEY",
                "API key name": SECRET_HEADER, "Value": "the current secret: callbacks.secrets[0]",
            }, f"EventBridge console ({region}) > API destinations > Connections > Create connection."),
            SetupStep("EventBridge API destination", {
                "Name": names["api_destination"], "API destination endpoint": self.callback_url(),
                "HTTP method": "POST", "Connection": names["connection"],
                "Invocation rate limit per second": str(self.settings.invocation_rate_per_second),
            }, "API destinations > Create API destination, with the connection above."),
            SetupStep("EventBridge rule", {
                "Name": names["rule"], "Event bus": "default", "Event pattern": pattern,
                "Target": f"EventBridge API destination {names['api_destination']}",
                "Execution role": self.settings.target_role_arn or "a new role (events:InvokeApiDestination)",
            }, f"Rules > Create rule on the default bus of {region}. Leave the target input as "
               "'Matched events' (no input transformer): the hub reads the event as EventBridge sends it."),
            SetupStep("Or all of it with CloudFormation", {
                "Template": "infra/connect-callbacks.yaml",
                "Command": f"aws cloudformation deploy --region {region} --template-file infra/connect-callbacks.yaml "
                           f"--stack-name {names['rule']}-callbacks --capabilities CAPABILITY_IAM "
                           f"--parameter-overrides {parameters}",
            }, "The template creates the connection, the API destination, the rule and the role that "
               "lets the rule invoke it. Pass the secret from a secure place, not your shell history."),
        ]
        limits = [
            "Amazon Connect tasks report status only: no agent replies reach the customer from Connect "
            "(tasks have no customer-visible messages); answer through POST /v1/messages.",
            "No internal notes: a reply the hub refused cannot be reported back on the task.",
            "No attachments, no priority changes.",
            "A completed task cannot be reopened; the customer's next message starts a new task.",
            "EventBridge delivers contact events on a best-effort basis; a lost COMPLETED leaves the "
            "case open until it closes by inactivity.",
        ]
        return CallbackSetup(vendor="Amazon Connect", steps=steps, limits=limits, can_create=True)

    def event_pattern(self) -> dict[str, Any]:
        """The rule's pattern: this instance's contact events of the followed types."""
        return {
            "source": [SOURCE],
            "detail-type": [DETAIL_TYPE],
            "detail": {"instanceArn": [self._instance_arn()], "eventType": list(FOLLOWED)},
        }

    def create_setup(self) -> list[str]:
        """Create (or update, so a rotated secret reaches EventBridge) the connection, the API
        destination, the invoking role and the rule with its target, in the instance's region.
        Raises `ConfigError` when the instance's ARN or the public URL is unknown."""
        from chalicelib.adapters.connectors.aws_clients import regional_client

        instance_arn = self._instance_arn()
        if not _INSTANCE_ARN.match(instance_arn):
            raise ConfigError(f"destinations[{self.destination}].instance_id: set the instance ARN "
                              "(the rule filters on it and lives in its region)")
        if not self.settings.public_url:
            raise ConfigError(f"destinations[{self.destination}].callbacks.public_url: set the hub's public "
                              f"callback URL (https://<api>/callbacks/{self.destination})")
        names = self._names()
        events = regional_client(self.connector.runtime, "events", self.connector.settings.instance_region)
        done: list[str] = []
        auth = {"ApiKeyAuthParameters": {"ApiKeyName": SECRET_HEADER, "ApiKeyValue": self.secrets()[0]}}
        connection_arn, verb = _upsert(
            lambda: events.describe_connection(Name=names["connection"]),
            lambda: events.create_connection(Name=names["connection"], AuthorizationType="API_KEY",
                                             AuthParameters=auth, Description=f"hub callbacks: {self.destination}"),
            lambda: events.update_connection(Name=names["connection"], AuthorizationType="API_KEY",
                                             AuthParameters=auth),
            "ConnectionArn")
        done.append(f"connection {names['connection']} {verb} (API_KEY header {SECRET_HEADER})")
        destination = {"Name": names["api_destination"], "ConnectionArn": connection_arn,
                       "InvocationEndpoint": self.settings.public_url, "HttpMethod": "POST",
                       "InvocationRateLimitPerSecond": self.settings.invocation_rate_per_second}
        destination_arn, verb = _upsert(
            lambda: events.describe_api_destination(Name=names["api_destination"]),
            lambda: events.create_api_destination(**destination),
            lambda: events.update_api_destination(**destination),
            "ApiDestinationArn")
        done.append(f"API destination {names['api_destination']} {verb} (POST {self.settings.public_url})")
        role_arn = self.settings.target_role_arn or self._invoke_role(names["role"], destination_arn, done)
        rule = events.put_rule(Name=names["rule"], EventPattern=json.dumps(self.event_pattern()), State="ENABLED",
                               Description=f"Amazon Connect contact events to the hub ({self.destination})")
        done.append(f"rule {names['rule']} put ({rule['RuleArn']})")
        answer = events.put_targets(Rule=names["rule"], Targets=[{
            "Id": "hub-callbacks", "Arn": destination_arn, "RoleArn": role_arn,
            "RetryPolicy": {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185},
        }])
        if answer.get("FailedEntryCount"):
            failed = answer.get("FailedEntries") or [{}]
            raise ConfigError(f"rule {names['rule']}: target refused: {failed[0].get('ErrorCode')}: "
                              f"{failed[0].get('ErrorMessage')}")
        done.append(f"target of {names['rule']}: the API destination, as role {role_arn}")
        return done

    def _invoke_role(self, name: str, destination_arn: str, done: list[str]) -> str:
        iam = self.connector.runtime.aws_client("iam") if self.connector.runtime.aws_client else None
        if iam is None:
            import boto3

            iam = boto3.client("iam")
        policy = json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Action": "events:InvokeApiDestination", "Resource": destination_arn}]})
        role_arn, verb = _upsert(
            lambda: iam.get_role(RoleName=name)["Role"],
            lambda: iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(_ASSUME_EVENTS),
                                    Description=f"EventBridge invokes the hub's callbacks ({self.destination})")["Role"],
            None, "Arn", missing="NoSuchEntity")
        iam.put_role_policy(RoleName=name, PolicyName="invoke-api-destination", PolicyDocument=policy)
        done.append(f"role {name} {verb} (events:InvokeApiDestination on the API destination)")
        return role_arn

    def _names(self) -> dict[str, str]:
        base = self.settings.resource_name or f"hub-{self.destination}"[:64]
        return {"connection": base, "api_destination": base, "rule": base, "role": f"{base}-invoke"[:64]}

    def _instance_arn(self) -> str:
        settings = self.connector.settings
        if settings.instance_id.startswith("arn:"):
            return settings.instance_id
        return f"arn:aws:connect:{settings.instance_region or '<region>'}:<account>:instance/{settings.instance_id}"


def _upsert(describe, create, update, key: str, *, missing: str = "ResourceNotFoundException") -> tuple[str, str]:
    """Create the resource, or update the one already there (`update` None: keep it): running
    `hubctl callbacks setup --create` again is how a rotated secret or a new URL reaches AWS."""
    from botocore.exceptions import ClientError

    try:
        found = describe()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != missing:
            raise
        return create()[key], "created"
    if update is None:
        return found[key], "kept"
    return update()[key], "updated"


def _envelope(body: bytes) -> dict[str, Any]:
    try:
        event = json.loads(body)
    except ValueError:
        raise MalformedPayloadError("body is not JSON (an EventBridge event)") from None
    if not isinstance(event, dict):
        raise MalformedPayloadError("body is not a JSON object (an EventBridge event)")
    for key in ("source", "detail-type", "detail"):
        if key not in event:
            raise MalformedPayloadError(f"{key!r} is missing: not an EventBridge event as the API destination posts it")
    if event["source"] != SOURCE:
        raise MalformedPayloadError(f"source {str(event['source'])[:60]!r} is not {SOURCE}")
    return event


def _field(data: object, name: str) -> Any:
    """`data[name]`, the key compared without regard to case (AWS's samples spell `agentInfo`,
    `AgentInfo`, `instanceArn`, `instanceARN`)."""
    if not isinstance(data, dict):
        return None
    if name in data:
        return data[name]
    lowered = name.lower()
    return next((value for key, value in data.items() if isinstance(key, str) and key.lower() == lowered), None)


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _assignee(detail: dict, event_type: str) -> str | None:
    """Who holds the task now: the agent's ARN once connected, the queue's ARN while queued (the
    hub's `assignee` is the ticket's owner; a queue is Connect's unassigned pool)."""
    if event_type == CONNECTED_TO_AGENT:
        return _text(_field(_field(detail, "agentInfo"), "agentArn"))
    if event_type == QUEUED:
        return _text(_field(_field(detail, "queueInfo"), "queueArn"))
    return None


def _event_instance(detail: dict) -> str | None:
    """The instance id (lower case) the event names in `detail.instanceArn`, if it names one."""
    arn = _text(_field(detail, "instanceArn"))
    if arn is None:
        return None
    return arn.rsplit("/", 1)[-1].lower()
