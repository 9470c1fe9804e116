"""Each function's policy allows what its code calls: the deployed path runs under moto with the
stage's resource names, every AWS call each function makes is recorded (Powertools' own clients
included), mapped to the IAM action and resource AWS authorizes it on, and checked against the
policy infra/policies.py writes for that function, from the same configuration. A call no statement
allows fails here, as AccessDenied would in the stage.

The configuration uses what the stages can: webhook secrets in SSM, a destination secret in Secrets
Manager and one in SSM, routing rules in the stage bucket, mail pulled from S3, bodies over the
claim-check limit through every queue, a dead letter and its replay, erasure; and the outbound
path: messages through `POST /v1/messages` to the web chat (its outbox, polled by the widget),
to Twilio (a provider on the local receiver) and through SES, consumed by the send worker, a
Twilio status callback matched to its message, and the message events delivered. A second
configuration covers two-way sync: a Zendesk destination (callback secret in SSM, API token in
Secrets Manager) whose signed callbacks go through `POST /callbacks/zendesk`, the process worker
relaying an agent's reply (read back from Zendesk) and refusing one (noted on the ticket by the
deliverer), and a solved ticket found through its CASEREF# link closing the case.
"""

from __future__ import annotations

import base64
import fnmatch
import functools
import hashlib
import hmac
import json
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import boto3
import botocore.client
import chalice.test
import pytest
from chalice.local import LambdaContext
from chalice.test import Client
from moto import mock_aws
from twilio.request_validator import RequestValidator

from chalicelib.bootstrap import Hub, use_hub
from chalicelib.errors import BatchIncompleteError
from chalicelib.hubconfig import load_config
from chalicelib.settings import Settings
from tests.support.aws import create_table
from tests.support.fake_zendesk import AGENT_ID, HUB_USER_ID, FakeZendesk
from tests.support.infra_scripts import load_infra_script
from tests.support.receiver import Answer, Receiver

ROOT = Path(__file__).resolve().parents[2]
REGION, ACCOUNT, STAGE = "eu-central-1", "123456789012", "dev"
BUCKET = f"hub-{STAGE}-{ACCOUNT}-{REGION}"
TWILIO_TOKEN = "0123456789abcdef0123456789abcdef"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
API_KEY = "policy-test-key"
EMAIL = (ROOT / "tests" / "fixtures" / "ses" / "email_umlauts.eml").read_bytes()

CONFIG = """
channels:
  twilio:
    auth_tokens: ["ssm:/hub/dev/twilio/auth-token"]
    public_url: https://hub.example.com/webhooks/twilio
    account_sid: AC{account_hex}
    numbers: {{sms: ["+14155550100"]}}
    api_base_url: {origin}
  ses: {{s3_prefix: "ses-inbound/", sending_addresses: ["{mailbox}"], configuration_set_name: hub-events}}
  webchat:
    sites: [{{id: shop}}]
media:
  link_secret: ["ssm:/hub/dev/media/link-secret"]
destinations:
  - name: crm
    type: webhook
    url: {url}/crm
    secrets: ["secretsmanager:hub/dev/crm/signing-secret"]
  - name: audit
    type: webhook
    url: {url}/audit
    secrets: ["ssm:/hub/dev/audit/signing-secret"]
routing:
  source: {{type: s3, bucket: {bucket}, key: routing/rules.yaml}}
api_keys:
  - name: ops
    sha256: {key}
    scopes: [customers:read, customers:write, customers:erase, operations, messages:send, events:write]
"""
#: Two-way sync: a Zendesk destination whose callbacks are verified with an SSM parameter (the API
#: function's) and whose API token is in Secrets Manager (the deliver function's, and the process
#: function's: it reads agents' replies back and notes refused ones on the ticket); the customer
#: writes by SMS and is answered by SMS (Twilio on the receiver); `crm` takes case events.
TWO_WAY_CONFIG = """
channels:
  twilio:
    auth_tokens: ["ssm:/hub/dev/twilio/auth-token"]
    public_url: https://hub.example.com/webhooks/twilio
    account_sid: AC{account_hex}
    numbers: {{sms: ["+14155550100"]}}
    api_base_url: {origin}
media:
  link_secret: ["ssm:/hub/dev/media/link-secret"]
destinations:
  - name: zendesk
    type: zendesk
    base_url: {zendesk}
    auth: {{type: basic, username: hub@acme.example/token, password: "secretsmanager:hub/dev/zendesk/api-token"}}
    callbacks:
      secrets: ["ssm:/hub/dev/zendesk/webhook-secret"]
      hub_author_ids: ["{hub_user}"]
  - name: crm
    type: webhook
    url: {url}/crm
    secrets: ["secretsmanager:hub/dev/crm/signing-secret"]
api_keys:
  - name: ops
    sha256: {key}
    scopes: [customers:read, customers:write]
"""
ZENDESK_SECRET = "zendesk-webhook-signing-secret"
#: The mailbox the stored email (tests/fixtures/ses/email_umlauts.eml) was sent to: replies leave from it.
MAILBOX = "support@inbound.acme.example"
TWILIO_CREATED = (ROOT / "tests" / "fixtures" / "twilio" / "outbound" / "api_created.body").read_bytes()
TWILIO_INVALID_NUMBER = (ROOT / "tests" / "fixtures" / "twilio" / "outbound" / "api_error_21211.body").read_bytes()
RULES = "rules:\n  - {name: urgent, when: {text: {contains: [urgent]}}, then: {priority: urgent}}\n"


policies = load_infra_script("policies")


# --- what a call is authorized on ----------------------------------------------------------------


def authorized_on(service: str, operation: str, params: dict) -> list[tuple[str, ...]]:
    """The (IAM action, resource ARN[, partition key]) AWS checks for one API call: a DynamoDB
    item's partition key is what a `dynamodb:LeadingKeys` condition looks at."""
    if service == "sqs":
        name = params["QueueUrl"].rsplit("/", 1)[-1]
        action = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage",
                  "ChangeMessageVisibilityBatch": "ChangeMessageVisibility"}.get(operation, operation)
        return [(f"sqs:{action}", f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")]
    if service == "dynamodb":
        def table(name: str) -> str:
            return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"

        def partition(action: dict) -> str:
            # A Query names its partition in the key condition (the store's is always `pk = :pk`).
            key = action.get("Key") or action.get("Item") or {"pk": (action.get("ExpressionAttributeValues") or {}).get(":pk", {})}
            return key.get("pk", {}).get("S", "")

        if operation == "TransactWriteItems":
            per_item = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                        "ConditionCheck": "ConditionCheckItem"}
            return [(f"dynamodb:{per_item[kind]}", table(action["TableName"]), partition(action))
                    for item in params["TransactItems"] for kind, action in item.items()]
        if operation == "TransactGetItems":
            return [("dynamodb:GetItem", table(item["Get"]["TableName"])) for item in params["TransactItems"]]
        if operation in ("BatchGetItem", "BatchWriteItem"):
            return [(f"dynamodb:{operation}", table(name)) for name in params["RequestItems"]]
        return [(f"dynamodb:{operation}", table(params["TableName"]), partition(params))]
    if service == "s3":
        if operation in ("ListObjects", "ListObjectsV2"):
            return [("s3:ListBucket", f"arn:aws:s3:::{params['Bucket']}")]
        action = {"HeadObject": "GetObject"}.get(operation, operation)
        return [(f"s3:{action}", f"arn:aws:s3:::{params['Bucket']}/{params['Key']}")]
    if service == "ssm":
        names = params["Names"] if operation == "GetParameters" else [params["Name"]]
        return [(f"ssm:{operation}", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{n.lstrip('/')}") for n in names]
    if service == "sesv2" and operation == "SendEmail":
        # SES checks the identity it sends from (the address when verified on its own, else its
        # domain: both must be allowed), the configuration set, and, for raw content, possibly
        # as SendRawEmail (SDK users report it; AWS names only SendEmail): every one of them.
        sender = params["FromEmailAddress"]
        resources = [f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/{sender}",
                     f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/{sender.rsplit('@', 1)[1]}"]
        if params.get("ConfigurationSetName"):
            resources.append(f"arn:aws:ses:{REGION}:{ACCOUNT}:configuration-set/{params['ConfigurationSetName']}")
        actions = ["ses:SendEmail", *(["ses:SendRawEmail"] if "Raw" in params.get("Content", {}) else [])]
        return [(action, resource, sender) for action in actions for resource in resources]
    if service == "secretsmanager":
        # The ARN ends in the name, a dash and six random characters.
        return [(f"secretsmanager:{operation}", f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{params['SecretId']}-AbC123")]
    raise AssertionError(f"map {service}.{operation} to its IAM action and resource in this test")


#: The conditions a statement may carry beyond the account pin, and what of the request each looks
#: at: the third element `authorized_on` gives (an item's partition key, the sender address).
CONDITIONS = {("ForAllValues:StringLike", "dynamodb:LeadingKeys"), ("StringLike", "ses:FromAddress")}


def allowed(policy: dict, action: str, resource: str, context: str = "") -> bool:
    for statement in policy["Statement"]:
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if action not in statement["Action"] or not any(fnmatch.fnmatchcase(resource, r) for r in resources):
            continue
        condition = statement.get("Condition")
        if condition in (None, policies.OWN_ACCOUNT):  # every resource here is the principal's account's
            return True
        [(operator, keys)] = condition.items()
        [(key, patterns)] = keys.items()
        assert (operator, key) in CONDITIONS, f"teach this test the condition {operator} {key}"
        if any(fnmatch.fnmatchcase(context, pattern) for pattern in patterns):
            return True
    return False


class Calls:
    """Every AWS call made while `as_function` names a function, by any client in the process.
    Each function runs on a hub of its own, with Powertools' caches emptied when another function
    runs: in the stage each is a container of its own, and one's cached rules or secrets must not
    hide the calls of another."""

    def __init__(self, hubs: dict[str, Hub] | None = None) -> None:
        self.function: str | None = None
        self.made: list[tuple[str, str, str, dict]] = []
        self.hubs = hubs or {}

    def record(self, client, operation: str, params: dict) -> None:
        if self.function is not None:
            self.made.append((self.function, client.meta.service_model.service_name, operation, dict(params)))

    @contextmanager
    def as_function(self, name: str):
        from aws_lambda_powertools.utilities import parameters

        parameters.clear_caches()
        use_hub(self.hubs.get(name))
        self.function = name
        try:
            yield
        finally:
            self.function = None

    def requests(self, function: str) -> set[tuple[str, ...]]:
        return {pair for made_by, service, operation, params in self.made if made_by == function
                for pair in authorized_on(service, operation, params)}


# --- the deployed path ---------------------------------------------------------------------------


@pytest.fixture
def deployed(tmp_path, monkeypatch):
    with deploy(tmp_path, monkeypatch, CONFIG) as (client, sqs, urls, receiver, _, calls, granted):
        yield client, sqs, urls, receiver, calls, granted


@pytest.fixture
def deployed_two_way(tmp_path, monkeypatch):
    with deploy(tmp_path, monkeypatch, TWO_WAY_CONFIG) as deployment:
        yield deployment


@contextmanager
def deploy(tmp_path, monkeypatch, config_text: str):
    """The stage under moto with `config_text` (formatted with the receiver's, the Zendesk fake's
    and the stage's names): the app's client, the setup SQS client, queue URLs, the receiver, the
    Zendesk fake, the call recorder and the policies generated from the same configuration."""
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters import base

    monkeypatch.setattr(chalice.test, "LambdaContext", functools.partial(LambdaContext, max_runtime_ms=60_000))
    for name, value in (("AWS_DEFAULT_REGION", REGION), ("AWS_ACCESS_KEY_ID", "x"), ("AWS_SECRET_ACCESS_KEY", "x")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    calls = Calls()
    make_api_call = botocore.client.BaseClient._make_api_call

    def recorded(client, operation, params):
        calls.record(client, operation, params)
        return make_api_call(client, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recorded)
    with mock_aws(), Receiver() as receiver, FakeZendesk() as zendesk:
        # Powertools keeps its clients and values per process: fetch from this moto account.
        parameters.clear_caches()
        base.DEFAULT_PROVIDERS.clear()
        session = boto3.Session(region_name=REGION)
        sqs, s3 = session.client("sqs"), session.client("s3")
        create_table(session.client("dynamodb"), f"hub-{STAGE}")
        urls = {}
        for role in ("inbound", "delivery", "outbound", "events"):
            dlq = sqs.create_queue(QueueName=f"hub-{STAGE}-{role}-dlq.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            urls[role] = sqs.create_queue(QueueName=f"hub-{STAGE}-{role}.fifo", Attributes={
                "FifoQueue": "true", "VisibilityTimeout": "360",
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 11}),
            })["QueueUrl"]
            urls[f"{role}-dlq"] = dlq
        urls["mail"] = sqs.create_queue(QueueName=f"hub-{STAGE}-ses-inbound")["QueueUrl"]
        mail_arn = sqs.get_queue_attributes(QueueUrl=urls["mail"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={"QueueConfigurations": [{
            "QueueArn": mail_arn, "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "ses-inbound/"}]}},
        }]})  # fmt: skip
        s3.put_object(Bucket=BUCKET, Key="routing/rules.yaml", Body=RULES.encode())
        ssm = session.client("ssm")
        for name, value in (("/hub/dev/twilio/auth-token", TWILIO_TOKEN), ("/hub/dev/audit/signing-secret", WHSEC)):
            ssm.put_parameter(Name=name, Value=value, Type="SecureString")
        ssm.put_parameter(Name="/hub/dev/media/link-secret", Value="l" * 32, Type="SecureString")
        ssm.put_parameter(Name="/hub/dev/zendesk/webhook-secret", Value=ZENDESK_SECRET, Type="SecureString")
        session.client("secretsmanager").create_secret(Name="hub/dev/crm/signing-secret", SecretString=WHSEC)
        session.client("secretsmanager").create_secret(Name="hub/dev/zendesk/api-token", SecretString="zendesk-token")
        ses = session.client("sesv2")
        ses.create_email_identity(EmailIdentity=MAILBOX.rsplit("@", 1)[1])
        ses.create_configuration_set(ConfigurationSetName="hub-events")

        config = tmp_path / "dev.yaml"
        config.write_text(config_text.format(
            url=receiver.url, bucket=BUCKET, key=hashlib.sha256(API_KEY.encode()).hexdigest(), account_hex="a" * 32,
            mailbox=MAILBOX, origin=receiver.url.rsplit("/", 1)[0], zendesk=zendesk.url, hub_user=HUB_USER_ID))
        granted = policies.policies_for(STAGE, load_config(config, allow_inline_secrets=False))
        settings = Settings(
            runtime="aws", stage=STAGE, config_path=str(config), table_name=f"hub-{STAGE}",
            inbound_queue_url=urls["inbound"], delivery_queue_url=urls["delivery"],
            delivery_dlq_url=urls["delivery-dlq"], outbound_queue_url=urls["outbound"],
            outbound_dlq_url=urls["outbound-dlq"], events_queue_url=urls["events"], events_dlq_url=urls["events-dlq"],
            bucket=BUCKET, data_dir=str(tmp_path),
            environ={"HUB_SES_INBOUND_QUEUE_URL": urls["mail"]},
        )
        clients = {service: session.client(service)
                   for service in ("dynamodb", "sqs", "s3", "ssm", "secretsmanager", "sesv2")}
        calls.hubs = {function: Hub(settings, aws_client=clients.__getitem__) for function in granted}
        from app import app

        try:
            with Client(app) as client:
                yield client, sqs, urls, receiver, zendesk, calls, granted
        finally:
            use_hub(None)
            parameters.clear_caches()
            base.DEFAULT_PROVIDERS.clear()


def event_of(sqs, url: str, *, at_most: int = 10) -> dict:
    records = []
    while len(records) < at_most and (answer := sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=min(10, at_most - len(records)), AttributeNames=["All"]).get("Messages")):
        records += [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                     "attributes": m["Attributes"], "eventSource": "aws:sqs", "messageAttributes": {}} for m in answer]
    assert records, f"nothing on {url}"
    return {"Records": records}


def run(client, calls: Calls, sqs, url: str, function: str, *, at_most: int = 10) -> None:
    """The event source mapping: a batch, the handler, the batch deleted if the handler succeeded."""
    event = event_of(sqs, url, at_most=at_most)
    with calls.as_function(function):
        try:
            client.lambda_.invoke(function, event)
        except BatchIncompleteError:
            return
    for record in event["Records"]:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=record["receiptHandle"])


def api(client, calls: Calls, method: str, path: str, body=None, headers=None):
    headers = {"Authorization": f"Bearer {API_KEY}", **({"Content-Type": "application/json"} if body is not None else {}),
               **(headers or {})}
    with calls.as_function("api_handler"):
        return getattr(client.http, method.lower())(path, headers=headers,
                                                    body=body if isinstance(body, (bytes, type(None))) else json.dumps(body))


def twilio_sms(text: str) -> tuple[bytes, dict]:
    params = {"MessageSid": "SM" + "c" * 32, "AccountSid": "AC" + "a" * 32, "From": "+14155550101",
              "To": "+14155550100", "Body": text, "NumMedia": "0"}
    return twilio_form("https://hub.example.com/webhooks/twilio", params)


def twilio_form(url: str, params: dict) -> tuple[bytes, dict]:
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, params)
    return urlencode(params).encode(), {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}


def outbound_scenario(client, calls: Calls, sqs, urls: dict, receiver) -> None:
    """The outbound path: a web chat visitor, the SMS customer and the email customer are answered
    through the send API, the send worker sends each (web chat outbox, Twilio on the receiver,
    SES), Twilio reports the SMS delivered, and the widget fetches its reply."""
    visitor = json.dumps({"site_id": "shop", "visitor_id": "v-1", "message_id": "m-1", "text": "Hallo?"}).encode()
    answer = api(client, calls, "POST", "/webhooks/webchat", visitor)
    assert answer.status_code == 202, answer.body
    token = json.loads(answer.body)["visitor_token"]
    run(client, calls, sqs, urls["inbound"], "process_inbound")
    [sms_customer] = json.loads(api(client, calls, "GET", "/v1/customers?identifier=phone:%2B14155550101").body)["data"]
    [mail_customer] = json.loads(api(client, calls, "GET",
                                     "/v1/customers?identifier=email:juergen.mueller@kunde.example").body)["data"]
    for to, idempotency in (({"identifier": "webchat:shop/v-1"}, "chat-1"), ({"customer_id": sms_customer["id"]}, "sms-1"),
                            ({"customer_id": mail_customer["id"]}, "mail-1")):
        sent = api(client, calls, "POST", "/v1/messages", {"to": to, "text": "Ihr Paket kommt morgen."},
                   {"Idempotency-Key": idempotency})
        assert sent.status_code == 202, sent.body
    receiver.script = [Answer(201, TWILIO_CREATED, {"Content-Type": "application/json"})]
    for _ in range(3):
        run(client, calls, sqs, urls["outbound"], "send", at_most=1)
    created = json.loads(TWILIO_CREATED)
    body, headers = twilio_form("https://hub.example.com/webhooks/twilio/status", {
        "MessageSid": created["sid"], "SmsSid": created["sid"], "MessageStatus": "delivered", "SmsStatus": "delivered",
        "AccountSid": created["account_sid"], "From": "+14155550100", "To": "+14155550101", "ApiVersion": "2010-04-01"})
    assert api(client, calls, "POST", "/webhooks/twilio/status", body, headers).status_code == 200
    run(client, calls, sqs, urls["inbound"], "process_inbound")
    fetched = api(client, calls, "GET", "/webhooks/webchat/messages?site_id=shop&visitor_id=v-1",
                  headers={"Authorization": f"Bearer {token}"})
    assert [m["text"] for m in json.loads(fetched.body)["data"]] == ["Ihr Paket kommt morgen."]
    statuses = {json.loads(api(client, calls, "GET", f"/v1/customers/{c['id']}/contacts").body)["data"][0]["status"]
                for c in (sms_customer, mail_customer)}
    assert statuses == {"delivered", "sent"}, statuses
    # Twilio refuses the next one for good: the send worker dead-letters it, an operator replays it.
    sent = api(client, calls, "POST", "/v1/messages", {"to": {"customer_id": sms_customer["id"]}, "text": "Noch was."})
    assert sent.status_code == 202, sent.body
    receiver.script = [Answer(400, TWILIO_INVALID_NUMBER, {"Content-Type": "application/json"})]
    run(client, calls, sqs, urls["outbound"], "send", at_most=1)
    [letter] = json.loads(api(client, calls, "GET", "/v1/dead-letters?destination=outbound").body)["data"]
    assert letter["kind"] == "message"
    assert api(client, calls, "POST", f"/v1/dead-letters/{letter['id']}/replay", {}).status_code == 202


def test_every_call_each_function_makes_is_allowed_by_its_own_policy(deployed):
    client, sqs, urls, receiver, calls, granted = deployed
    # A webhook over the claim-check limit: the API function writes its body to queue/.
    body, headers = twilio_sms("urgent " + "x" * 250_000)
    response = api(client, calls, "POST", "/webhooks/twilio", body, headers)
    assert response.status_code == 200, response.body
    # Mail SES stored: the bucket announces it, the pull worker reads and enqueues it.
    boto3.client("s3", region_name=REGION).put_object(Bucket=BUCKET, Key="ses-inbound/0001", Body=EMAIL)
    run(client, calls, sqs, urls["mail"], "ses_inbound")

    run(client, calls, sqs, urls["inbound"], "process_inbound")
    # The audit destination refuses for good (a dead letter); the crm destination takes it.
    receiver.script = [Answer(400, b'{"error":"no"}')]
    for _ in range(4):
        run(client, calls, sqs, urls["delivery"], "deliver", at_most=1)
    letters = json.loads(api(client, calls, "GET", "/v1/dead-letters").body)["data"]
    assert letters, "no dead letter to replay"
    assert api(client, calls, "POST", f"/v1/dead-letters/{letters[0]['id']}/replay", {}).status_code in (200, 202)
    assert api(client, calls, "POST", "/v1/routing/explain", {"contact": {"channel": "sms", "text": "urgent"}}).status_code == 200
    outbound_scenario(client, calls, sqs, urls, receiver)
    # The message events (message.sent, message.status) to both destinations.
    while sqs.get_queue_attributes(QueueUrl=urls["delivery"], AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"]["ApproximateNumberOfMessages"] != "0":
        run(client, calls, sqs, urls["delivery"], "deliver", at_most=1)
    [customer] = json.loads(api(client, calls, "GET", "/v1/customers?identifier=phone:%2B14155550101").body)["data"]
    assert api(client, calls, "GET", f"/v1/customers/{customer['id']}/export").status_code == 200
    assert api(client, calls, "DELETE", f"/v1/customers/{customer['id']}").status_code in (200, 202)
    assert api(client, calls, "GET", "/health").status_code == 200

    denied = {function: sorted(pair for pair in calls.requests(function) if not allowed(granted[function], *pair))
              for function in granted}
    assert denied == {function: [] for function in granted}
    # The scenario reached what it means to check.
    made = {function: {request[0] for request in calls.requests(function)} for function in granted}
    assert {"sqs:SendMessage", "s3:PutObject", "ssm:GetParameter", "dynamodb:GetItem", "s3:GetObject",
            "s3:DeleteObject"} <= made["api_handler"]
    assert {"s3:GetObject", "sqs:SendMessage"} <= made["ses_inbound"]
    assert {"s3:GetObject", "s3:PutObject", "sqs:SendMessage", "dynamodb:PutItem"} <= made["process_inbound"]
    # Both read the routing rules from the bucket (explain, and routing each contact).
    rules = ("s3:GetObject", f"arn:aws:s3:::{BUCKET}/routing/rules.yaml")
    assert rules in calls.requests("api_handler") and rules in calls.requests("process_inbound")
    assert {"secretsmanager:GetSecretValue", "ssm:GetParameter", "sqs:SendMessage", "s3:GetObject",
            "s3:PutObject", "dynamodb:PutItem"} <= made["deliver"]
    assert {"sqs:SendMessage", "dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:DeleteItem",
            "ses:SendEmail", "ses:SendRawEmail", "ssm:GetParameter"} <= made["send"]
    assert ("sqs:SendMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:hub-{STAGE}-outbound-dlq.fifo") in calls.requests("send")
    # The send API queued messages, the process worker matched a status to one of them.
    assert ("sqs:SendMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:hub-{STAGE}-outbound.fifo") in calls.requests("api_handler")
    assert any(request[0] == "dynamodb:BatchGetItem" for request in calls.requests("process_inbound"))


class _AcknowledgingProcessor:
    """Stands in for the event processor (its own tests cover its calls): the worker's plumbing
    (receive, claim-checked body, release) is what runs under the policy here."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def process_body(self, body: str, *, receive_count: int) -> str:
        work = json.loads(body)
        self.ids.append(work["event"]["id"] if work["kind"] == "event" else f"{work['kind']}:{work['case_id']}")
        return "event_processed"


def test_every_call_of_the_event_intake_and_the_timers_is_allowed_by_each_function_s_policy(deployed):
    client, sqs, urls, receiver, calls, granted = deployed
    event = {"type": "parcel.late", "id": "shop:parcel-1", "occurred_at": "2026-01-02T10:00:00Z",
             "customer": {"identifier": "phone:+14155550101"}, "data": {"note": "x" * 30_000}}
    batch = [event, *({**event, "id": f"shop:parcel-{i}", "customer": {"customer_id": f"cus_{i}"}} for i in range(2, 12))]
    answer = api(client, calls, "POST", "/v1/events?check_duplicates=true", batch)
    assert answer.status_code == 202, answer.body
    # EventBridge: one event accepted, one refused (kept as an unhandled item).
    envelope = {"version": "0", "id": "eb-1", "detail-type": "Parcel Late", "source": "shop.logistics",
                "time": "2026-01-02T10:00:00Z", "region": REGION, "resources": [],
                "detail": {"customer": {"customer_id": "cus_7"}, "data": {"parcel": "P-7"}}}
    with calls.as_function("eventbridge_events"):
        assert client.lambda_.invoke("eventbridge_events", envelope).payload == {"status": "queued"}
        refused = {**envelope, "id": "eb-2", "time": "not a time"}
        assert client.lambda_.invoke("eventbridge_events", refused).payload == {"status": "rejected"}
    # EventBridge Scheduler fires a case timer: the timers function enqueues it.
    from datetime import UTC, datetime

    from chalicelib.service.case_timers import case_timers

    [timer] = case_timers("case_1", "cus_1", {"sla": datetime(2026, 1, 2, 12, 0, tzinfo=UTC)})
    with calls.as_function("timers"):
        client.lambda_.invoke("timers", json.loads(timer.model_dump_json()))
    processor = calls.hubs["process_events"].event_processor = _AcknowledgingProcessor()
    while len(processor.ids) < 13:
        run(client, calls, sqs, urls["events"], "process_events")
    assert sorted(processor.ids) == sorted([e["id"] for e in batch] + ["eb-1", "timer:case_1"])

    functions = ("api_handler", "eventbridge_events", "timers", "process_events")
    denied = {function: sorted(pair for pair in calls.requests(function) if not allowed(granted[function], *pair))
              for function in functions}
    assert denied == {function: [] for function in functions}
    queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:hub-{STAGE}-events.fifo"
    assert ("sqs:SendMessage", queue) in calls.requests("api_handler")
    assert ("sqs:SendMessage", queue) in calls.requests("eventbridge_events")
    assert ("sqs:SendMessage", queue) in calls.requests("timers")
    made = {function: {request[0] for request in calls.requests(function)} for function in functions}
    assert "dynamodb:PutItem" in made["eventbridge_events"]  # the refused event, kept as unhandled
    assert "dynamodb:BatchGetItem" in made["api_handler"] or "dynamodb:GetItem" in made["api_handler"]


# --- two-way sync --------------------------------------------------------------------------------


def drain(client, calls: Calls, sqs, url: str, function: str) -> None:
    while sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"]["ApproximateNumberOfMessages"] != "0":
        run(client, calls, sqs, url, function, at_most=1)


def zendesk_trigger(client, calls: Calls, event: str, ticket: int, *, external_id: str, status: str = "open",
                    updated_at: str):
    """Zendesk's trigger notifying the webhook: the setup's body (`trigger_body`) as Zendesk renders
    it, signed as Zendesk signs (base64 HMAC-SHA256 of the timestamp and the body), now."""
    from datetime import UTC, datetime

    from chalicelib.adapters.callbacks.zendesk import BODY_FIELDS

    values = {"ticket.id": str(ticket), "ticket.external_id": external_id, "ticket.status": status,
              "ticket.priority": "normal", "ticket.assignee.id": str(AGENT_ID), "ticket.assignee.name": "Alex Agent",
              "ticket.updated_at_with_timestamp": updated_at, "current_user.id": str(AGENT_ID),
              "current_user.role": "agent"}
    body = json.dumps({"hub_event": event, **{name: values[template.strip("{}")]
                                              for name, template in BODY_FIELDS.items()}}).encode()
    timestamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    signature = base64.b64encode(hmac.new(ZENDESK_SECRET.encode(), timestamp.encode() + body, hashlib.sha256).digest())
    with calls.as_function("api_handler"):
        answer = client.http.post("/callbacks/zendesk", body=body, headers={
            "Content-Type": "application/json", "X-Zendesk-Webhook-Signature": signature.decode(),
            "X-Zendesk-Webhook-Signature-Timestamp": timestamp})
    assert answer.status_code == 200, answer.body


def test_every_two_way_call_each_function_makes_is_allowed_by_its_own_policy(deployed_two_way):
    """A customer's SMS becomes a Zendesk ticket; an agent's reply comes back through the signed
    callback and goes out by SMS; a second reply is refused (the customer opted out) and noted on
    the ticket; the ticket is solved, reported without the case id (found through the CASEREF#
    link), and the case closes with `case.closed` to `crm`."""
    client, sqs, urls, receiver, zendesk, calls, granted = deployed_two_way
    body, headers = twilio_sms("Wo bleibt mein Paket?")
    assert api(client, calls, "POST", "/webhooks/twilio", body, headers).status_code == 200
    run(client, calls, sqs, urls["inbound"], "process_inbound")
    drain(client, calls, sqs, urls["delivery"], "deliver")
    [customer] = json.loads(api(client, calls, "GET", "/v1/customers?identifier=phone:%2B14155550101").body)["data"]
    [contact] = json.loads(api(client, calls, "GET", f"/v1/customers/{customer['id']}/contacts").body)["data"]
    case_id = contact["case_id"]
    [ticket] = zendesk.tickets

    zendesk.agent_comment(ticket, "Ihr Paket kommt morgen.")
    zendesk_trigger(client, calls, "reply", ticket, external_id=case_id, updated_at="2026-01-01T00:01:00Z")
    run(client, calls, sqs, urls["inbound"], "process_inbound")
    receiver.script = [Answer(201, TWILIO_CREATED, {"Content-Type": "application/json"})]
    run(client, calls, sqs, urls["outbound"], "send", at_most=1)
    drain(client, calls, sqs, urls["delivery"], "deliver")

    consent = api(client, calls, "PUT", f"/v1/customers/{customer['id']}/consent",
                  {"channel": "sms", "purpose": "service", "state": "opted_out"})
    assert consent.status_code == 200, consent.body
    zendesk.agent_comment(ticket, "Noch eine Frage?")
    zendesk_trigger(client, calls, "reply", ticket, external_id=case_id, updated_at="2026-01-01T00:02:00Z")
    run(client, calls, sqs, urls["inbound"], "process_inbound")
    drain(client, calls, sqs, urls["delivery"], "deliver")

    zendesk_trigger(client, calls, "status", ticket, external_id="", status="solved", updated_at="2026-01-01T00:03:00Z")
    run(client, calls, sqs, urls["inbound"], "process_inbound")
    drain(client, calls, sqs, urls["delivery"], "deliver")

    case = json.loads(api(client, calls, "GET", f"/v1/cases/{case_id}").body)
    assert (case["status"], case["close_reason"], case["closed_by"]) == ("closed", "vendor_closed", "zendesk")
    notes = [c for c in zendesk.comments(ticket) if not c["public"]]
    assert any("Noch eine Frage?" in note["body"] for note in notes), "the refused reply was noted on the ticket"
    texts = [json.loads(r.body).get("type") for r in receiver.requests if r.path.endswith("/crm")]
    assert "case.closed" in texts

    denied = {function: sorted(pair for pair in calls.requests(function) if not allowed(granted[function], *pair))
              for function in granted}
    assert denied == {function: [] for function in granted}
    # The scenario reached what it means to check.
    webhook_secret = ("ssm:GetParameter", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/hub/dev/zendesk/webhook-secret")
    api_token = ("secretsmanager:GetSecretValue",
                 f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:hub/dev/zendesk/api-token-AbC123")
    assert webhook_secret in calls.requests("api_handler")
    assert api_token in calls.requests("process_inbound") and api_token in calls.requests("deliver")
    assert webhook_secret not in calls.requests("deliver") | calls.requests("process_inbound")
    assert any(r[0] == "dynamodb:PutItem" and r[2] == f"CASEREF#zendesk:{ticket}" for r in calls.requests("deliver"))
    queues = {r[1].rsplit(":", 1)[-1] for r in calls.requests("process_inbound") if r[0] == "sqs:SendMessage"}
    assert {f"hub-{STAGE}-outbound.fifo", f"hub-{STAGE}-delivery.fifo"} <= queues
    # The solved ticket's case was found through its link, and its state written with the case.
    process_made = [params for made_by, service, operation, params in calls.made
                    if made_by == "process_inbound" and operation in ("BatchGetItem", "GetItem")]
    assert f"CASEREF#zendesk:{ticket}" in json.dumps(process_made)
    assert any(r[0] == "dynamodb:PutItem" and r[2] == f"CASE#{case_id}" for r in calls.requests("process_inbound"))
