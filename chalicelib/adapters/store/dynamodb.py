"""DynamoDB implementation of the store: one table, every access by key, never a Scan.

Items (pk / sk), each holding its document as a JSON string in `doc` so numbers never become
`Decimal` and a model round-trips exactly:

    DEDUPE#<key>                  DEDUPE              state, lease_until, expires_at (TTL)
    IDENT#<identifier key>        IDENT               customer_id
    CUST#<customer id>            PROFILE             doc (Customer), version (guards concurrent writes)
    CUST#<customer id>            TOMBSTONE           erased_at (kept after erasure: id and time only)
    CUST#<customer id>            CONTACT#<contact>   doc (Contact): the timeline, newest first by ULID
    CONTACT#<contact id>          CONTACT             doc (Contact without deliveries)
    CONTACT#<contact id>          DLV#<destination>   doc (Delivery)
    CASE#<case id>                CASE                doc (Case without external refs)
    CASE#<case id>                REF#<destination>   doc (ExternalRef)
    THREAD#<thread key>           THREAD              case_id
    DEADLETTERS                   <delivery id>       destination, doc (DeadLetter: a dead delivery with its job)
    PARKED                        CONTACT#<contact>   doc (ParkedContact: the exception queue, oldest first)
    MERGE#<merge id>              MERGE               doc (MergeRecord: the audit trail of one merge)
    STATUS#<provider>#<msg id>    <status>            doc (StatusEvent), recorded_at, expires_at (TTL)
    HEALTH                        HEALTH              (never written: `ping` reads it)

Costs per method (asserted in tests/integration/test_dynamodb_store.py): `claim` 1 PutItem,
`find_customer_ids` 1 BatchGetItem, `get_customer` 1 GetItem, `create_customer` 1
TransactWriteItems, `commit_contact` and `update_customer` 1 TransactWriteItems (the customer put
is conditioned on its version, so concurrent workers never lose an update), `find_threads` 1
BatchGetItem, `commit_merge` 1 TransactWriteItems, `record_status` 1 PutItem, `get_contact` and `get_case` 1 Query each. Retries of
unprocessed batch items are the only extra calls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.adapters.store.base import (
    ClaimState,
    ContactCommit,
    Erasure,
    IdentifierTakenError,
    MergeCommit,
    Page,
    Store,
    parked_entry,
)
from chalicelib.domain.identifiers import Identifier
from chalicelib.domain.identity_rules import BLOCKED_OWNER
from chalicelib.domain.models import (
    Case,
    Contact,
    Customer,
    DeadLetter,
    Delivery,
    ExternalRef,
    MergeRecord,
    ParkedContact,
    StatusEvent,
    UnhandledEvent,
    utcnow,
)
from chalicelib.errors import ConcurrentUpdateError, ConflictError, StoreUnavailableError

logger = logging.getLogger(__name__)

#: BatchGetItem reads at most 100 keys, BatchWriteItem writes at most 25 items per call.
_MAX_BATCH_GET = 100
#: Unprocessed batch items (throttling) are retried this many times with exponential backoff.
_BATCH_ATTEMPTS = 6
#: BatchWriteItem takes at most 25 requests.
_MAX_BATCH_WRITE = 25
_BACKOFF_SECONDS = 0.05

_IN_PROGRESS = "in_progress"
_DONE = "done"
_HEALTH_KEY = {"pk": {"S": "HEALTH"}, "sk": {"S": "HEALTH"}}


class _ConditionFailed(Exception):
    """A conditional write lost: an outcome, not a failure. Carries the error response."""

    def __init__(self, response: dict) -> None:
        super().__init__("condition failed")
        self.response = response


class DynamoDbStore(Store):
    """The store on one DynamoDB table (see `infra/stateful.yaml`). `client` is a boto3 DynamoDB client."""

    def __init__(self, table_name: str, client: Any) -> None:
        if not table_name:
            raise ValueError("table_name is required")
        self._table = table_name
        self._client = client

    # --- exactly-once processing -----------------------------------------------------------------

    def claim(self, key: str, *, now: datetime, lease_until: datetime, expires_at: datetime) -> str:
        # One conditional write: a missing or expired record, or an in-progress one whose lease ran
        # out, is taken over; otherwise the old item (ALL_OLD) says whether it is DONE or BUSY.
        try:
            self._call(
                "put_item",
                TableName=self._table,
                Item={
                    **_dedupe_key(key),
                    "state": {"S": _IN_PROGRESS},
                    "lease_until": _num(lease_until.timestamp()),
                    "expires_at": _epoch(expires_at),
                },
                ConditionExpression=(
                    "attribute_not_exists(pk) OR expires_at <= :now"
                    " OR (#state = :in_progress AND lease_until <= :now)"
                ),
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={":now": _num(now.timestamp()), ":in_progress": {"S": _IN_PROGRESS}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except _ConditionFailed as failed:
            old = failed.response.get("Item") or {}
            return ClaimState.DONE if old.get("state", {}).get("S") == _DONE else ClaimState.BUSY
        return ClaimState.ACQUIRED

    def release(self, key: str) -> None:
        try:
            self._call(
                "delete_item",
                TableName=self._table,
                Key=_dedupe_key(key),
                ConditionExpression="#state = :in_progress",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={":in_progress": {"S": _IN_PROGRESS}},
            )
        except _ConditionFailed:
            pass  # already done, or never claimed: nothing to release

    def find_customer_ids(self, identifiers: list[Identifier]) -> dict[str, str]:
        # BatchGetItem rejects duplicate keys in one request.
        keys = list(dict.fromkeys(i.key for i in identifiers))
        found: dict[str, str] = {}
        for start in range(0, len(keys), _MAX_BATCH_GET):
            request = {
                self._table: {
                    "Keys": [_ident_key(k) for k in keys[start:start + _MAX_BATCH_GET]],
                    "ProjectionExpression": "pk, customer_id",
                    "ConsistentRead": True,
                }
            }
            for item in self._batch_get(request):
                found[item["pk"]["S"][len("IDENT#"):]] = item["customer_id"]["S"]
        return found

    def get_customer(self, customer_id: str) -> Customer | None:
        response = self._call(
            "get_item", TableName=self._table, Key=_key(f"CUST#{customer_id}", "PROFILE"), ConsistentRead=True
        )
        item = response.get("Item")
        return Customer.model_validate_json(item["doc"]["S"]) if item else None

    def create_customer(self, customer: Customer) -> None:
        keys = list(dict.fromkeys(i.key for i in customer.identifiers))
        actions: list[dict] = [
            {"Put": {"TableName": self._table, "Item": _customer_item(customer)}}
        ]
        for identifier_key in keys:
            actions.append({
                "Put": {
                    "TableName": self._table,
                    "Item": {**_ident_key(identifier_key), "customer_id": {"S": customer.id}},
                    "ConditionExpression": "attribute_not_exists(pk)",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            })
        try:
            self._call("transact_write_items", TransactItems=actions)
        except _ConditionFailed as failed:
            raise self._identifier_taken(failed.response, keys) from None

    def _identifier_taken(self, response: dict, keys: list[str]) -> Exception:
        reasons = response.get("CancellationReasons") or []
        # Reason 0 is the customer put; reason i (i ≥ 1) belongs to keys[i - 1].
        for identifier_key, reason in zip(keys, reasons[1:]):
            if reason.get("Code") != "ConditionalCheckFailed":
                continue
            owner = (reason.get("Item") or {}).get("customer_id", {}).get("S")
            if owner is None:
                # Older APIs/emulators omit the old item: one read names the owner.
                item = self._call(
                    "get_item", TableName=self._table, Key=_ident_key(identifier_key), ConsistentRead=True
                ).get("Item")
                owner = item["customer_id"]["S"] if item else None
            if owner is not None:
                return IdentifierTakenError(identifier_key, owner)
        codes = [r.get("Code") for r in reasons]
        logger.warning("create_customer cancelled: %s", codes)
        return StoreUnavailableError("store dynamodb TransactWriteItems cancelled", detail={"reasons": codes})

    def commit_merge(self, commit: MergeCommit) -> None:
        actions: list[dict] = [_guarded_customer_put(self._table, customer) for customer in commit.customers]
        for move in commit.moves:
            actions.append({
                "Update": {
                    "TableName": self._table,
                    "Key": _ident_key(move.key),
                    "UpdateExpression": "SET customer_id = :to",
                    "ConditionExpression": "customer_id = :from",
                    "ExpressionAttributeValues": {":to": {"S": move.to_customer}, ":from": {"S": move.from_customer}},
                }
            })
        actions += [_case_put(self._table, case) for case in commit.cases]
        actions.append({"Put": {"TableName": self._table, "Item": {**_merge_key(commit.record.id), **_doc(commit.record)}}})
        try:
            self._call("transact_write_items", TransactItems=actions)
        except _ConditionFailed:
            raise ConcurrentUpdateError("a customer or identifier of the merge changed since it was read") from None

    def get_merge(self, merge_id: str) -> MergeRecord | None:
        item = self._call("get_item", TableName=self._table, Key=_merge_key(merge_id), ConsistentRead=True).get("Item")
        return MergeRecord.model_validate_json(item["doc"]["S"]) if item else None

    # --- contacts and cases ----------------------------------------------------------------------

    def update_customer(
        self, customer: Customer, *, new_identifiers: tuple[Identifier, ...] = (), cases: tuple[Case, ...] = ()
    ) -> None:
        self._transact(self._customer_actions(customer, new_identifiers, cases), customer, new_identifiers)

    def commit_contact(self, commit: ContactCommit) -> None:
        contact, case = commit.contact, commit.case
        actions = self._customer_actions(
            commit.customer, commit.new_identifiers, (case, *commit.other_cases), blocked=commit.blocked_identifiers
        )
        items = [
            *_contact_items(contact),
            *({**_thread_key(key), "case_id": {"S": case.id}} for key in commit.thread_keys),
            _done_item(commit.dedupe_key, commit.dedupe_expires_at),
        ]
        if contact.routing.parked is not None:
            items.append({**_parked_key(contact.id), **_doc(parked_entry(contact))})
        actions += [{"Put": {"TableName": self._table, "Item": item}} for item in items]
        self._transact(actions, commit.customer, (*commit.new_identifiers, *commit.blocked_identifiers))

    def find_threads(self, thread_keys: list[str]) -> dict[str, str]:
        keys = list(dict.fromkeys(thread_keys))
        if not keys:
            return {}
        items = self._batch_get({self._table: {"Keys": [_thread_key(k) for k in keys], "ConsistentRead": True}})
        return {item["pk"]["S"][len("THREAD#"):]: item["case_id"]["S"] for item in items}

    def _customer_actions(
        self, customer: Customer, new_identifiers: tuple[Identifier, ...], cases: tuple[Case, ...],
        *, blocked: tuple[Identifier, ...] = (),
    ) -> list[dict]:
        """The guarded customer put first, then one conditional put per new identifier, then cases:
        `_transact` maps cancellation reasons back by these positions."""
        actions: list[dict] = [_guarded_customer_put(self._table, customer)]
        owned = [(i, customer.id) for i in new_identifiers] + [(i, BLOCKED_OWNER) for i in blocked]
        for identifier, owner in owned:
            actions.append({
                "Put": {
                    "TableName": self._table,
                    "Item": {**_ident_key(identifier.key), "customer_id": {"S": owner}},
                    "ConditionExpression": "attribute_not_exists(pk) OR customer_id = :owner",
                    "ExpressionAttributeValues": {":owner": {"S": owner}},
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            })
        actions += [_case_put(self._table, case) for case in cases]
        return actions

    def _transact(self, actions: list[dict], customer: Customer, new_identifiers: tuple[Identifier, ...]) -> None:
        try:
            self._call("transact_write_items", TransactItems=actions)
        except _ConditionFailed as failed:
            reasons = failed.response.get("CancellationReasons") or []
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                raise ConcurrentUpdateError(f"customer {customer.id} changed since it was read") from None
            raise self._identifier_taken(failed.response, [i.key for i in new_identifiers]) from None

    def get_contact(self, contact_id: str) -> Contact | None:
        contact: Contact | None = None
        deliveries: list[Delivery] = []
        for item in self._query_partition(f"CONTACT#{contact_id}"):
            sk = item["sk"]["S"]
            if sk == "CONTACT":
                contact = Contact.model_validate_json(item["doc"]["S"])
            elif sk.startswith("DLV#"):
                deliveries.append(Delivery.model_validate_json(item["doc"]["S"]))
        if contact is not None:
            contact.deliveries = deliveries  # sorted by destination: the sort key order
        return contact

    def list_contacts(self, customer_id: str, *, limit: int, cursor: str | None = None) -> Page[Contact]:
        params: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": f"CUST#{customer_id}"}, ":prefix": {"S": "CONTACT#"}},
            "ScanIndexForward": False,
            # One extra item tells whether another page exists, without a second call.
            "Limit": max(1, limit) + 1,
        }
        if cursor:
            params["ExclusiveStartKey"] = _key(f"CUST#{customer_id}", f"CONTACT#{cursor}")
        response = self._call("query", **params)
        raw = response.get("Items", [])
        items = [Contact.model_validate_json(item["doc"]["S"]) for item in raw[:limit]]
        # A page cut short by the 1 MB response limit also carries a LastEvaluatedKey.
        more = len(raw) > limit or "LastEvaluatedKey" in response
        return Page(items=items, cursor=items[-1].id if items and more else None)

    def get_case(self, case_id: str) -> Case | None:
        case: Case | None = None
        refs: list[ExternalRef] = []
        for item in self._query_partition(f"CASE#{case_id}"):
            sk = item["sk"]["S"]
            if sk == "CASE":
                case = Case.model_validate_json(item["doc"]["S"])
            elif sk.startswith("REF#"):
                refs.append(ExternalRef.model_validate_json(item["doc"]["S"]))
        if case is not None:
            for ref in refs:
                case.external_refs[ref.destination] = ref
        return case

    def put_case_ref(self, case_id: str, destination: str, ref: str) -> None:
        doc = ExternalRef(destination=destination, ref=ref, updated_at=utcnow())
        self._call("put_item", TableName=self._table, Item={**_key(f"CASE#{case_id}", f"REF#{destination}"), **_doc(doc)})

    # --- exception queue -------------------------------------------------------------------------

    def list_parked(self, *, limit: int, cursor: str | None = None) -> Page[ParkedContact]:
        params: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": "PARKED"}},
            "ConsistentRead": True,
            "Limit": max(1, limit) + 1,
        }
        if cursor:
            params["ExclusiveStartKey"] = _parked_key(cursor)
        response = self._call("query", **params)
        raw = response.get("Items", [])
        items = [ParkedContact.model_validate_json(item["doc"]["S"]) for item in raw[:limit]]
        more = len(raw) > limit or "LastEvaluatedKey" in response
        return Page(items=items, cursor=items[-1].contact_id if items and more else None)

    def release_parked(self, contact: Contact) -> None:
        actions: list[dict] = [{
            "Delete": {"TableName": self._table, "Key": _parked_key(contact.id),
                       "ConditionExpression": "attribute_exists(pk)"}
        }]
        actions += [{"Put": {"TableName": self._table, "Item": item}} for item in _contact_items(contact)]
        try:
            self._call("transact_write_items", TransactItems=actions)
        except _ConditionFailed:
            raise ConflictError(f"contact {contact.id} is not in the exception queue") from None

    # --- deliveries ------------------------------------------------------------------------------

    def get_delivery(self, contact_id: str, destination: str) -> Delivery | None:
        response = self._call(
            "get_item", TableName=self._table, Key=_key(f"CONTACT#{contact_id}", f"DLV#{destination}"),
            ConsistentRead=True,
        )
        item = response.get("Item")
        return Delivery.model_validate_json(item["doc"]["S"]) if item else None

    def put_delivery(self, delivery: Delivery) -> None:
        item = {**_key(f"CONTACT#{delivery.contact_id}", f"DLV#{delivery.destination}"), **_doc(delivery)}
        self._call("put_item", TableName=self._table, Item=item)

    def put_dead_letter(self, letter: DeadLetter) -> None:
        item = {**_key("DEADLETTERS", letter.id), "destination": {"S": letter.destination}, **_doc(letter)}
        self._call("put_item", TableName=self._table, Item=item)

    def list_dead_letters(self, *, destination: str | None = None, limit: int,
                          cursor: str | None = None) -> Page[DeadLetter]:
        # One partition, read in key order; dead letters are an operator's list, not a hot path.
        params: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": "DEADLETTERS"}},
            "ConsistentRead": True,
        }
        if destination is not None:
            params["FilterExpression"] = "destination = :destination"
            params["ExpressionAttributeValues"][":destination"] = {"S": destination}
        if cursor:
            params["ExclusiveStartKey"] = _key("DEADLETTERS", cursor)
        items: list[DeadLetter] = []
        while True:
            response = self._call("query", **params)
            items += [DeadLetter.model_validate_json(item["doc"]["S"]) for item in response.get("Items", [])]
            if len(items) > limit or "LastEvaluatedKey" not in response:
                break
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        page = items[:limit]
        more = len(items) > limit or "LastEvaluatedKey" in response
        return Page(items=page, cursor=page[-1].id if page and more else None)

    def get_dead_letter(self, letter_id: str) -> DeadLetter | None:
        item = self._call("get_item", TableName=self._table, Key=_key("DEADLETTERS", letter_id),
                          ConsistentRead=True).get("Item")
        return DeadLetter.model_validate_json(item["doc"]["S"]) if item else None

    def delete_dead_letter(self, letter_id: str) -> None:
        self._call("delete_item", TableName=self._table, Key=_key("DEADLETTERS", letter_id))

    # --- status events ---------------------------------------------------------------------------

    def record_status(self, event: StatusEvent, *, expires_at: datetime) -> bool:
        item = {
            **_key(_status_pk(event.provider, event.provider_message_id), event.status),
            **_doc(event),
            # Recording order, so `list_statuses` lists in the order the hub learned of them.
            "recorded_at": {"N": str(time.time_ns())},
            "expires_at": _epoch(expires_at),
        }
        try:
            self._call(
                "put_item",
                TableName=self._table,
                Item=item,
                # An expired record TTL has not deleted yet counts as absent.
                ConditionExpression="attribute_not_exists(pk) OR expires_at <= :now",
                ExpressionAttributeValues={":now": _num(time.time())},
            )
        except _ConditionFailed:
            return False
        return True

    def list_statuses(self, provider: str, provider_message_id: str) -> list[StatusEvent]:
        items = self._query_partition(_status_pk(provider, provider_message_id), consistent=False)
        items.sort(key=lambda item: int(item["recorded_at"]["N"]))
        return [StatusEvent.model_validate_json(item["doc"]["S"]) for item in items]

    # --- unhandled webhook items -----------------------------------------------------------------

    def record_unhandled(self, event: UnhandledEvent, *, expires_at: datetime) -> bool:
        item = {
            **_key(_unhandled_pk(event.received_at.date()), event.id),
            "provider": {"S": event.provider},
            **_doc(event),
            "expires_at": _epoch(expires_at),
        }
        try:
            self._call("put_item", TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)")
        except _ConditionFailed:
            return False
        return True

    def list_unhandled(self, *, day: date, provider: str | None = None, limit: int,
                       cursor: str | None = None) -> Page[UnhandledEvent]:
        # One partition per day, in key (arrival) order: an operator's list, never a hot path.
        params: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            # TTL deletes within days, not at once: an expired record is gone for readers.
            "FilterExpression": "expires_at > :now",
            "ExpressionAttributeValues": {":pk": {"S": _unhandled_pk(day)}, ":now": _num(time.time())},
        }
        if provider is not None:
            params["FilterExpression"] += " AND provider = :provider"
            params["ExpressionAttributeValues"][":provider"] = {"S": provider}
        if cursor:
            params["ExclusiveStartKey"] = _key(_unhandled_pk(day), cursor)
        items: list[dict] = []
        while True:
            response = self._call("query", **params)
            items += response.get("Items", [])
            if len(items) > limit or "LastEvaluatedKey" not in response:
                break
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        page = items[:limit]
        more = len(items) > limit or "LastEvaluatedKey" in response
        return Page(
            items=[UnhandledEvent.model_validate_json(item["doc"]["S"]) for item in page],
            cursor=page[-1]["sk"]["S"] if page and more else None,
        )

    # --- operations ------------------------------------------------------------------------------

    # --- erasure -----------------------------------------------------------------------------------

    def erase_customer(self, erasure: Erasure) -> None:
        # Tombstone first: from here on, deliver workers drop this customer's queued jobs.
        tombstone = {**_key(f"CUST#{erasure.customer_id}", "TOMBSTONE"), "erased_at": {"S": erasure.erased_at.isoformat()}}
        self._call("put_item", TableName=self._table, Item=tombstone)
        for identifier_key in erasure.identifier_keys:
            try:
                self._call(
                    "delete_item", TableName=self._table, Key=_ident_key(identifier_key),
                    ConditionExpression="customer_id = :owner",
                    ExpressionAttributeValues={":owner": {"S": erasure.customer_id}},
                )
            except _ConditionFailed:
                continue  # linked to someone else meanwhile, or already gone
        partitions = [f"CUST#{erasure.customer_id}"]
        partitions += [f"CONTACT#{contact_id}" for contact_id in erasure.contact_ids]
        partitions += [f"CASE#{case_id}" for case_id in erasure.case_ids]
        doomed = [
            _key(item["pk"]["S"], item["sk"]["S"])
            for pk in partitions
            for item in self._query_partition(pk)
            if item["sk"]["S"] != "TOMBSTONE"
        ]
        doomed += [_thread_key(key) for key in erasure.thread_keys]
        doomed += [_merge_key(merge_id) for merge_id in erasure.merge_ids]
        doomed += [_parked_key(contact_id) for contact_id in erasure.contact_ids]
        # The profile goes last: while it exists, an interrupted erasure is found and repeated.
        doomed.sort(key=lambda key: key == _key(f"CUST#{erasure.customer_id}", "PROFILE"))
        requests = [{"DeleteRequest": {"Key": key}} for key in doomed]
        requests += [
            {"PutRequest": {"Item": _done_item(key, erasure.tombstone_expires_at)}} for key in erasure.dedupe_keys
        ]
        self._batch_write(requests)

    def is_erased(self, customer_id: str) -> bool:
        response = self._call(
            "get_item", TableName=self._table, Key=_key(f"CUST#{customer_id}", "TOMBSTONE"), ConsistentRead=True,
            ProjectionExpression="pk",
        )
        return "Item" in response

    def ping(self) -> None:
        # A GetItem on a key that never exists: proves the table answers, costs 0.5 RCU, and needs
        # no DescribeTable permission.
        self._call("get_item", TableName=self._table, Key=_HEALTH_KEY, ProjectionExpression="pk")

    # --- plumbing --------------------------------------------------------------------------------

    def _call(self, operation: str, **params: Any) -> dict:
        method: Callable[..., dict] = getattr(self._client, operation)
        try:
            return method(**params)
        except ClientError as exc:
            if _conditional(exc):
                raise _ConditionFailed(exc.response) from None
            code = exc.response.get("Error", {}).get("Code", "")
            logger.warning("dynamodb %s failed: %s", operation, code)
            raise StoreUnavailableError(f"store dynamodb {operation} failed: {code}") from exc
        except BotoCoreError as exc:
            # Connection errors, timeouts and parameter validation all leave the request undone.
            logger.warning("dynamodb %s failed: %s", operation, type(exc).__name__)
            raise StoreUnavailableError(f"store dynamodb {operation} failed: {type(exc).__name__}") from exc

    def _query_partition(self, pk: str, *, consistent: bool = True) -> list[dict]:
        params: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
            "ConsistentRead": consistent,
        }
        items: list[dict] = []
        while True:
            response = self._call("query", **params)
            items.extend(response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return items
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _batch_get(self, request: dict) -> list[dict]:
        items: list[dict] = []
        for attempt in range(_BATCH_ATTEMPTS):
            response = self._call("batch_get_item", RequestItems=request)
            items.extend(response.get("Responses", {}).get(self._table, []))
            request = response.get("UnprocessedKeys") or {}
            if not request:
                return items
            time.sleep(_BACKOFF_SECONDS * 2**attempt)
        raise StoreUnavailableError("store dynamodb batch_get_item left keys unprocessed")


    def _batch_write(self, requests: list[dict]) -> None:
        for start in range(0, len(requests), _MAX_BATCH_WRITE):
            pending = {self._table: requests[start:start + _MAX_BATCH_WRITE]}
            for attempt in range(_BATCH_ATTEMPTS):
                pending = self._call("batch_write_item", RequestItems=pending).get("UnprocessedItems") or {}
                if not pending:
                    break
                time.sleep(_BACKOFF_SECONDS * 2**attempt)
            else:
                raise StoreUnavailableError("store dynamodb batch_write_item left items unprocessed")


def _conditional(exc: ClientError) -> bool:
    """True when the failure is a lost condition (an outcome), not a transient cancellation."""
    code = exc.response.get("Error", {}).get("Code")
    if code == "ConditionalCheckFailedException":
        return True
    if code != "TransactionCanceledException":
        return False
    return any(r.get("Code") == "ConditionalCheckFailed" for r in exc.response.get("CancellationReasons") or [])


def _key(pk: str, sk: str) -> dict:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def _dedupe_key(key: str) -> dict:
    return _key(f"DEDUPE#{key}", "DEDUPE")


def _ident_key(identifier_key: str) -> dict:
    return _key(f"IDENT#{identifier_key}", "IDENT")


def _unhandled_pk(day: date) -> str:
    return f"UNHANDLED#{day.isoformat()}"


def _status_pk(provider: str, provider_message_id: str) -> str:
    return f"STATUS#{provider}#{provider_message_id}"


def _thread_key(thread_key: str) -> dict:
    return _key(f"THREAD#{thread_key}", "THREAD")


def _parked_key(contact_id: str) -> dict:
    return _key("PARKED", f"CONTACT#{contact_id}")


def _contact_items(contact: Contact) -> list[dict]:
    """The contact item and its timeline copy (the customer's partition lists it by key)."""
    doc = {"doc": {"S": contact.model_dump_json(exclude={"deliveries"})}}
    return [
        {**_key(f"CONTACT#{contact.id}", "CONTACT"), **doc},
        {**_key(f"CUST#{contact.customer_id}", f"CONTACT#{contact.id}"), **doc},
    ]


def _merge_key(merge_id: str) -> dict:
    return _key(f"MERGE#{merge_id}", "MERGE")


def _guarded_customer_put(table: str, customer: Customer) -> dict:
    """Put the customer's next version only over the version it was read at: two writers of one
    customer can never lose an update."""
    return {
        "Put": {
            "TableName": table,
            "Item": _customer_item(customer),
            "ConditionExpression": "#version = :expected",
            "ExpressionAttributeNames": {"#version": "version"},
            "ExpressionAttributeValues": {":expected": {"N": str(customer.version - 1)}},
        }
    }


def _case_put(table: str, case: Case) -> dict:
    item = {**_key(f"CASE#{case.id}", "CASE"), "doc": {"S": case.model_dump_json(exclude={"external_refs"})}}
    return {"Put": {"TableName": table, "Item": item}}


def _customer_item(customer: Customer) -> dict:
    # The version is a top-level attribute so writes can be conditioned on it.
    return {**_key(f"CUST#{customer.id}", "PROFILE"), **_doc(customer), "version": {"N": str(customer.version)}}


def _done_item(key: str, expires_at: datetime) -> dict:
    return {**_dedupe_key(key), "state": {"S": _DONE}, "expires_at": _epoch(expires_at)}


def _doc(model: Any) -> dict:
    return {"doc": {"S": model.model_dump_json()}}


def _num(value: float) -> dict:
    return {"N": f"{value:.6f}"}


def _epoch(moment: datetime) -> dict:
    """Whole epoch seconds: the unit DynamoDB's TTL reads."""
    return {"N": str(int(moment.timestamp()))}
