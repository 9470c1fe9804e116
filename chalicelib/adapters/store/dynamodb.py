"""DynamoDB implementation of the store: one table, every access by key, never a Scan (but the
operator's one-off `reindex_customers`).

Items (pk / sk), each holding its document as a JSON string in `doc` so numbers never become
`Decimal` and a model round-trips exactly:

    DEDUPE#<key>                  DEDUPE              state (done), expires_at (TTL)
    IDENT#<identifier key>        IDENT               customer_id
    CUST#<customer id>            PROFILE             doc (Customer), version (guards concurrent writes),
                                                      seg1 / seg2 (the indexed attributes' values, if any)
    CUST#<customer id>            TOMBSTONE           erased_at (kept after erasure: id and time only)
    CUST#<customer id>            CONTACT#<contact>   doc (Contact): the timeline, newest first by ULID
    CUST#<customer id>            DEADLETTER#<id>     expires_at (TTL): the customer's dead letters, by key
    CONTACT#<contact id>          CONTACT             doc (Contact without deliveries)
    CONTACT#<contact id>          DLV#<destination>   doc (Delivery)
    CASE#<case id>                CASE                doc (Case without external refs)
    CASE#<case id>                REF#<destination>   doc (ExternalRef)
    THREAD#<thread key>           THREAD              case_id
    SENT#<provider>:<message id>  SENT                contact_id (the outbound contact a provider's id names)
    OUTBOX#<site>/<visitor>       OUTBOX              doc (the web chat visitor's replies, newest last)
    DEADLETTERS                   <delivery id>       destination, customer_id (contact jobs), expires_at (TTL),
                                                      doc (DeadLetter: a dead delivery with its job)
    PARKED                        CONTACT#<contact>   doc (ParkedContact: the exception queue, oldest first)
    MERGE#<merge id>              MERGE               doc (MergeRecord: the audit trail of one merge)
    STATUS#<provider>#<msg id>    <status>            doc (StatusEvent), recorded_at, expires_at (TTL)
    UNHANDLED#<day>               <event id>          provider, doc (UnhandledEvent), expires_at (TTL)
    REMEMBER#<key>                REMEMBER            expires_at (TTL): `remember`, replay protection
    HEALTH                        HEALTH              (never written: `ping` reads it)

Segments (`segment_page`) are two sparse global secondary indexes, `segment1` (HASH `seg1`) and
`segment2` (HASH `seg2`), each with RANGE `pk` and KEYS_ONLY: only profiles holding a value of an
indexed attribute are in them, and the profile's Put replaces the whole item, so a changed or
removed value (an absorbed or erased customer's too) leaves the index without another write.

A dead letter of a contact job holds the message text and the customer's address: its index item
under the customer (ids only) lets erasure and export find it without a scan, and both expire
with the letter (`delivery.dead_letter_days`). A dead customer event carries ids only and is
filed under nobody.

Costs per method (asserted in tests/integration/test_dynamodb_store.py): `begin` 1 BatchGetItem
(the dedupe marker with the identifiers' links or the customer's profile),
`find_customer_ids` 1 BatchGetItem, `get_customer` 1 GetItem, `create_customer` 1
TransactWriteItems, `commit_contact` and `update_customer` 1 TransactWriteItems (the customer put
is conditioned on its version, so concurrent workers never lose an update), `find_threads` 1
BatchGetItem, `commit_merge` 1 TransactWriteItems, `record_status` 1 PutItem, `remember` 1
PutItem, `get_contact` and `get_case` 1 Query each, `put_dead_letter` 1 TransactWriteItems (1
PutItem for a letter filed under nobody), `dead_letters_of` 1 Query (+ 1 BatchGetItem when there
are some), `segment_page` 1 Query on the slot's index, `get_customers` 1 BatchGetItem per 100
ids, `commit_event` 1 TransactWriteItems. Retries of unprocessed batch items are the only extra calls.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.adapters.store.base import MAX_ITEM_BYTES, Store, case_ref_key
from chalicelib.domain.models import ExternalRef
from chalicelib.domain.segments import stored_index_entries
from chalicelib.adapters.store.records import (
    ClaimIdentifier,
    ConditionLost,
    DeadLetters,
    DeleteCase,
    DeleteContact,
    DeleteCustomer,
    DeleteDeadLetter,
    DeleteFiledUnder,
    DeleteMerge,
    DeleteOutbox,
    DeleteSentLink,
    DeleteStatuses,
    DeleteThread,
    Doc,
    IdentifierMove,
    Link,
    Listing,
    MarkDone,
    Once,
    ParkedQueue,
    PutCase,
    PutCaseRef,
    PutContact,
    PutCustomer,
    PutDeadLetter,
    PutDelivery,
    PutMerge,
    PutParked,
    PutOutbox,
    PutSentLink,
    PutThread,
    PutTombstone,
    ReleaseIdentifier,
    Remembered,
    RequireNotErased,
    Segment,
    StatusRecord,
    TakeParked,
    Timeline,
    Tree,
    UnhandledDay,
    UnhandledRecord,
    Write,
)
from chalicelib.errors import HubError, ItemTooLargeError, StoreRejectedError, StoreUnavailableError

logger = logging.getLogger(__name__)

#: BatchGetItem reads at most 100 keys per call.
_MAX_BATCH_GET = 100
#: Unprocessed batch items (throttling) are retried this many times with exponential backoff.
_BATCH_ATTEMPTS = 6
#: BatchWriteItem takes at most 25 requests.
_MAX_BATCH_WRITE = 25
_BACKOFF_SECONDS = 0.05

_DONE = "done"
_DEAD_LETTERS = "DEADLETTERS"
_FILED_LETTER = "DEADLETTER#"
_HEALTH_KEY = {"pk": {"S": "HEALTH"}, "sk": {"S": "HEALTH"}}
#: An item whose record is written unless a live one (not past `expires_at`) exists; an expired
#: record TTL has not deleted yet counts as absent.
_ONCE_CONDITION = "attribute_not_exists(pk) OR expires_at <= :now"
#: A message's done marker is written unless a live one exists (a marker of another state, such as
#: a lease an older version of the hub took, is replaced).
_NOT_DONE_CONDITION = "attribute_not_exists(pk) OR #state <> :done OR expires_at <= :now"

_DOC_KEYS: dict[Doc, Callable[..., dict]] = {
    Doc.CUSTOMER: lambda customer_id: _key(f"CUST#{customer_id}", "PROFILE"),
    Doc.MERGE: lambda merge_id: _merge_key(merge_id),
    Doc.DELIVERY: lambda contact_id, destination: _key(f"CONTACT#{contact_id}", f"DLV#{destination}"),
    Doc.DEAD_LETTER: lambda letter_id: _key(_DEAD_LETTERS, letter_id),
    Doc.OUTBOX: lambda key: _key(f"OUTBOX#{key}", "OUTBOX"),
}
#: partition prefix, the parent's sort key, the children's sort-key prefix
_TREES = {Tree.CONTACT: ("CONTACT#", "CONTACT", "DLV#"), Tree.CASE: ("CASE#", "CASE", "REF#")}
#: partition prefix, sort key, the attribute holding the id the key leads to
_LINKS = {Link.IDENTIFIER: ("IDENT#", "IDENT", "customer_id"), Link.THREAD: ("THREAD#", "THREAD", "case_id"),
          Link.SENT: ("SENT#", "SENT", "contact_id"), Link.CASE_REF: ("CASEREF#", "CASEREF", "case_id")}


class _ConditionFailed(Exception):
    """A conditional write lost: an outcome, not a failure. Carries the error response."""

    def __init__(self, response: dict) -> None:
        super().__init__("condition failed")
        self.response = response


class DynamoDbStore(Store):
    """The store on one DynamoDB table (see `infra/stateful.yaml`). `client` is a boto3 DynamoDB client."""

    backend = "dynamodb"

    def __init__(self, table_name: str, client: Any, *, max_item_bytes: int = MAX_ITEM_BYTES,
                 indexed_attributes: Sequence[str] = ()) -> None:
        if not table_name:
            raise ValueError("table_name is required")
        super().__init__(max_item_bytes=max_item_bytes, indexed_attributes=indexed_attributes)
        self._table = table_name
        self._client = client

    # --- primitives ------------------------------------------------------------------------------

    def _failure(self, exc: Exception) -> tuple[type[HubError], str] | None:
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            reasons = exc.response.get("CancellationReasons") or []
            # A request DynamoDB refuses as such (in a transaction: a reason `ValidationError`)
            # is refused again however often it is sent.
            invalid = [r for r in reasons if r.get("Code") == "ValidationError"]
            if code == "ValidationException" or invalid:
                messages = [exc.response.get("Error", {}).get("Message", ""), *(r.get("Message", "") for r in invalid)]
                too_large = any("item size" in message.lower() for message in messages)
                return (ItemTooLargeError if too_large else StoreRejectedError), code
            # Throttling, 5xx, a cancelled transaction, a missing table: worth a retry.
            return StoreUnavailableError, code
        if isinstance(exc, BotoCoreError):
            # Connection errors, timeouts and client-side validation all leave the request undone.
            return StoreUnavailableError, type(exc).__name__
        return None

    def _begin(self, dedupe_key: str, now: datetime, identifier_keys: list[str],
               customer_id: str | None) -> tuple[bool, dict[str, str], str | None]:
        # One BatchGetItem for everything (more only past 100 keys); the items tell themselves apart
        # by partition prefix.
        prefix = _LINKS[Link.IDENTIFIER][0]
        keys = [_dedupe_key(dedupe_key), *(_ident_key(k) for k in identifier_keys)]
        if customer_id is not None:
            keys.append(_DOC_KEYS[Doc.CUSTOMER](customer_id))
        done, owners, doc = False, {}, None
        for start in range(0, len(keys), _MAX_BATCH_GET):
            request = {self._table: {"Keys": keys[start:start + _MAX_BATCH_GET], "ConsistentRead": True}}
            for item in self._batch_get(request):
                pk = item["pk"]["S"]
                if pk.startswith("DEDUPE#"):
                    # TTL deletes late: an expired marker counts as absent.
                    done = item.get("state", {}).get("S") == _DONE and float(item["expires_at"]["N"]) > now.timestamp()
                elif pk.startswith(prefix):
                    owners[pk[len(prefix):]] = item["customer_id"]["S"]
                else:
                    doc = item["doc"]["S"]
        return done, owners, doc

    def _put_once(self, record: Once, now: datetime) -> bool:
        match record:
            case StatusRecord():
                item = {
                    **_key(_status_pk(record.provider, record.message_id), record.variant),
                    "doc": {"S": record.doc},
                    # Recording order, so `list_statuses` lists in the order the hub learned of them.
                    "recorded_at": {"N": str(time.time_ns())},
                }
            case UnhandledRecord():
                item = {**_key(_unhandled_pk(record.day), record.event_id), "provider": {"S": record.provider},
                        "doc": {"S": record.doc}}
        try:
            self._call("put_item", TableName=self._table, Item={**item, "expires_at": _epoch(record.expires_at)},
                       ConditionExpression=_ONCE_CONDITION, ExpressionAttributeValues={":now": _num(now.timestamp())})
        except _ConditionFailed:
            return False
        return True

    def _remember(self, record: Remembered, now: datetime) -> str | None:
        item = {**_key(f"REMEMBER#{record.key}", "REMEMBER"), "value": {"S": record.value},
                "expires_at": _epoch(record.expires_at)}
        try:
            self._call("put_item", TableName=self._table, Item=item, ConditionExpression=_ONCE_CONDITION,
                       ExpressionAttributeValues={":now": _num(now.timestamp())},
                       ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except _ConditionFailed as failed:
            return (failed.response.get("Item") or {}).get("value", {}).get("S", "")
        return None

    def _read(self, doc: Doc, key: tuple[str, ...]) -> str | None:
        item = self._call("get_item", TableName=self._table, Key=_DOC_KEYS[doc](*key), ConsistentRead=True).get("Item")
        return item["doc"]["S"] if item else None

    def _read_many(self, doc: Doc, keys: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(keys), _MAX_BATCH_GET):
            chunk = keys[start:start + _MAX_BATCH_GET]
            keys_of = {key: _DOC_KEYS[doc](key) for key in chunk}
            by_key = {(item_key["pk"]["S"], item_key["sk"]["S"]): key for key, item_key in keys_of.items()}
            request = {self._table: {"Keys": list(keys_of.values()),
                                     "ProjectionExpression": "pk, sk, doc", "ConsistentRead": True}}
            for item in self._batch_get(request):
                found[by_key[(item["pk"]["S"], item["sk"]["S"])]] = item["doc"]["S"]
        return found

    def _read_tree(self, tree: Tree, key: str) -> tuple[str | None, list[str]]:
        prefix, parent_sk, child_prefix = _TREES[tree]
        parent: str | None = None
        children: list[str] = []
        for item in self._query_partition(f"{prefix}{key}"):
            sk = item["sk"]["S"]
            if sk == parent_sk:
                parent = item["doc"]["S"]
            elif sk.startswith(child_prefix):
                children.append(item["doc"]["S"])  # by destination: the sort key order
        return parent, children if parent is not None else []

    def _lookup(self, link: Link, keys: list[str]) -> dict[str, str]:
        prefix, sk, attribute = _LINKS[link]
        found: dict[str, str] = {}
        for start in range(0, len(keys), _MAX_BATCH_GET):
            request = {
                self._table: {
                    "Keys": [_key(f"{prefix}{k}", sk) for k in keys[start:start + _MAX_BATCH_GET]],
                    "ProjectionExpression": f"pk, {attribute}",
                    "ConsistentRead": True,
                }
            }
            for item in self._batch_get(request):
                found[item["pk"]["S"][len(prefix):]] = item[attribute]["S"]
        return found

    def _list(self, listing: Listing, limit: int, cursor: str | None) -> tuple[list[str], bool]:
        if isinstance(listing, Segment):
            return self._segment(listing, limit, cursor)
        params: dict[str, Any] = {"TableName": self._table, "KeyConditionExpression": "pk = :pk"}
        match listing:
            case Timeline(customer_id=customer_id):
                pk = f"CUST#{customer_id}"
                params.update(KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)", ScanIndexForward=False,
                              ExpressionAttributeValues={":pk": {"S": pk}, ":prefix": {"S": "CONTACT#"}})
                start = f"CONTACT#{cursor}"
            case ParkedQueue():
                pk, start = "PARKED", f"CONTACT#{cursor}"
                params.update(ExpressionAttributeValues={":pk": {"S": pk}}, ConsistentRead=True)
            case DeadLetters(destination=destination, now=now):
                # One partition, read in key order; dead letters are an operator's list, not a hot path.
                pk, start = _DEAD_LETTERS, cursor
                params.update(ConsistentRead=True,
                              FilterExpression="(attribute_not_exists(expires_at) OR expires_at > :now)",
                              ExpressionAttributeValues={":pk": {"S": pk}, ":now": _num(now.timestamp())})
                if destination is not None:
                    params["FilterExpression"] += " AND destination = :destination"
                    params["ExpressionAttributeValues"][":destination"] = {"S": destination}
            case UnhandledDay(day=day, provider=provider, now=now):
                # One partition per day, in key (arrival) order: an operator's list, never a hot path.
                pk, start = _unhandled_pk(day), cursor
                # TTL deletes within days, not at once: an expired record is gone for readers.
                params.update(FilterExpression="expires_at > :now",
                              ExpressionAttributeValues={":pk": {"S": pk}, ":now": _num(now.timestamp())})
                if provider is not None:
                    params["FilterExpression"] += " AND provider = :provider"
                    params["ExpressionAttributeValues"][":provider"] = {"S": provider}
        if cursor:
            params["ExclusiveStartKey"] = _key(pk, start)
        if "FilterExpression" not in params:
            # One extra item tells whether another page exists, without a second call.
            params["Limit"] = max(1, limit) + 1
        items: list[dict] = []
        while True:
            response = self._call("query", **params)
            items += response.get("Items", [])
            if "Limit" in params or len(items) > limit or "LastEvaluatedKey" not in response:
                break
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        # A page cut short by the 1 MB response limit also carries a LastEvaluatedKey.
        more = len(items) > limit or "LastEvaluatedKey" in response
        return [item["doc"]["S"] for item in items[:limit]], more

    def _segment(self, segment: Segment, limit: int, cursor: str | None) -> tuple[list[str], bool]:
        """One Query on the slot's sparse index, in `pk` (customer id) order. A global secondary
        index cannot be read consistently: a just-changed customer may be missed or still listed."""
        attribute = f"seg{segment.slot}"
        params: dict[str, Any] = {
            "TableName": self._table, "IndexName": f"segment{segment.slot}",
            "KeyConditionExpression": "#seg = :value", "ExpressionAttributeNames": {"#seg": attribute},
            "ExpressionAttributeValues": {":value": {"S": segment.value}}, "ProjectionExpression": "pk",
            # One extra item tells whether another page exists, without a second call.
            "Limit": limit + 1,
        }
        if cursor:
            params["ExclusiveStartKey"] = {attribute: {"S": segment.value}, **_key(f"CUST#{cursor}", "PROFILE")}
        ids: list[str] = []
        while True:
            response = self._call("query", **params)
            ids += [item["pk"]["S"][len("CUST#"):] for item in response.get("Items", [])]
            if len(ids) > limit or "LastEvaluatedKey" not in response:
                return ids[:limit], len(ids) > limit
            # Cut short by the 1 MB response limit: read on.
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]
            params["Limit"] = limit + 1 - len(ids)

    def _reindex(self, attributes: tuple[str, ...], limit: int, cursor: str | None) -> tuple[int, int, str | None]:
        params: dict[str, Any] = {
            "TableName": self._table, "FilterExpression": "sk = :profile", "Limit": limit, "ConsistentRead": True,
            "ProjectionExpression": "pk, doc, #version, seg1, seg2", "ExpressionAttributeNames": {"#version": "version"},
            "ExpressionAttributeValues": {":profile": {"S": "PROFILE"}},
        }
        if cursor:
            params["ExclusiveStartKey"] = _scan_position(cursor)
        response = self._call("scan", **params)
        items = response.get("Items", [])
        changed = sum(self._reindex_profile(item, attributes) for item in items)
        last = response.get("LastEvaluatedKey")
        return len(items), changed, json.dumps([last["pk"]["S"], last["sk"]["S"]]) if last else None

    def _reindex_profile(self, item: dict, attributes: tuple[str, ...]) -> bool:
        """Set the profile's segment keys as its document says, unless the customer was written
        since the Scan read it (that write set them); whether they changed."""
        wanted = {f"seg{slot}": value for slot, value in stored_index_entries(item["doc"]["S"], attributes)}
        held = {name: item[name]["S"] for name in ("seg1", "seg2") if name in item}
        if wanted == held:
            return False
        clauses = []
        if wanted:
            clauses.append("SET " + ", ".join(f"{name} = :{name}" for name in wanted))
        if removed := [name for name in held if name not in wanted]:
            clauses.append("REMOVE " + ", ".join(removed))
        values = {f":{name}": {"S": value} for name, value in wanted.items()}
        try:
            self._call("update_item", TableName=self._table, Key=_key(item["pk"]["S"], "PROFILE"),
                       UpdateExpression=" ".join(clauses), ConditionExpression="#version = :version",
                       ExpressionAttributeNames={"#version": "version"},
                       ExpressionAttributeValues={**values, ":version": item["version"]})
        except _ConditionFailed:
            return False
        return True

    def _filed_dead_letters(self, customer_id: str) -> list[str]:
        filed = self._query_partition(f"CUST#{customer_id}", prefix=_FILED_LETTER, projection="sk")
        ids = [item["sk"]["S"][len(_FILED_LETTER):] for item in filed]
        docs: list[str] = []
        for start in range(0, len(ids), _MAX_BATCH_GET):
            keys = [_key(_DEAD_LETTERS, letter_id) for letter_id in ids[start:start + _MAX_BATCH_GET]]
            # A letter replayed (deleted) leaves its index item to expire with it: it is skipped.
            docs += [item["doc"]["S"] for item in self._batch_get({self._table: {"Keys": keys, "ConsistentRead": True}})]
        return docs

    def _statuses(self, provider: str, message_id: str) -> list[str]:
        items = self._query_partition(_status_pk(provider, message_id), consistent=False)
        items.sort(key=lambda item: int(item["recorded_at"]["N"]))
        return [item["doc"]["S"] for item in items]

    def _is_erased(self, customer_id: str) -> bool:
        response = self._call(
            "get_item", TableName=self._table, Key=_key(f"CUST#{customer_id}", "TOMBSTONE"), ConsistentRead=True,
            ProjectionExpression="pk",
        )
        return "Item" in response

    def _ping(self) -> None:
        # A GetItem on a key that never exists: proves the table answers, costs 0.5 RCU, and needs
        # no DescribeTable permission.
        self._call("get_item", TableName=self._table, Key=_HEALTH_KEY, ProjectionExpression="pk")

    def _write(self, writes: Sequence[Write]) -> None:
        actions: list[dict] = []
        #: the write each action belongs to: cancellation reasons come back by action position
        owners: list[Write] = []
        for write in writes:
            for action in self._actions(write):
                actions.append(action)
                owners.append(write)
        try:
            self._call("transact_write_items", TransactItems=actions)
        except _ConditionFailed as failed:
            raise self._condition_lost(failed.response, owners) from None

    def _write_one(self, write: Write) -> None:
        # A lone unconditional item costs half as much as the same write in a transaction.
        actions = self._actions(write)
        if len(actions) != 1:
            self._write([write])
            return
        [(kind, params)] = actions[0].items()
        self._call({"Put": "put_item", "Delete": "delete_item"}[kind], **params)

    def _erase(self, writes: Sequence[Write]) -> None:
        """Too many items for a transaction: the tombstone first (workers stop delivering at
        once), then the identifier links one by one (each only if still the customer's), then
        one BatchWriteItem per 25 deletions and done markers, the profile last. Each partition
        is read by key (Query) to find what it holds."""
        requests: dict[tuple[str, str], dict] = {}

        def delete(key: dict) -> None:
            requests.setdefault((key["pk"]["S"], key["sk"]["S"]), {"DeleteRequest": {"Key": key}})

        for write in writes:
            match write:
                case PutTombstone(customer_id=customer_id, erased_at=erased_at):
                    self._call("put_item", TableName=self._table, Item={
                        **_key(f"CUST#{customer_id}", "TOMBSTONE"), "erased_at": {"S": erased_at.isoformat()}})
                case ReleaseIdentifier(key=identifier_key, owner=owner):
                    try:
                        self._call("delete_item", TableName=self._table, Key=_ident_key(identifier_key),
                                   ConditionExpression="customer_id = :owner",
                                   ExpressionAttributeValues={":owner": {"S": owner}})
                    except _ConditionFailed:
                        continue  # linked to someone else meanwhile, or already gone
                case DeleteFiledUnder(customer_id=customer_id):
                    for item in self._query_partition(f"CUST#{customer_id}"):
                        sk = item["sk"]["S"]
                        if sk in ("PROFILE", "TOMBSTONE"):
                            continue
                        delete(_key(item["pk"]["S"], sk))
                        if sk.startswith(_FILED_LETTER):
                            delete(_key(_DEAD_LETTERS, sk[len(_FILED_LETTER):]))
                case DeleteContact(contact_id=contact_id):
                    for item in self._query_partition(f"CONTACT#{contact_id}"):
                        delete(_key(item["pk"]["S"], item["sk"]["S"]))
                    delete(_parked_key(contact_id))
                case DeleteCase(case_id=case_id):
                    for item in self._query_partition(f"CASE#{case_id}"):
                        delete(_key(item["pk"]["S"], item["sk"]["S"]))
                        if item["sk"]["S"].startswith("REF#") and "doc" in item:
                            # The link back from the destination's ticket (`Link.CASE_REF`).
                            ref = ExternalRef.model_validate_json(item["doc"]["S"])
                            delete(_key(f"CASEREF#{case_ref_key(ref.destination, ref.ref)}", "CASEREF"))
                case DeleteThread(key=thread_key):
                    delete(_thread_key(thread_key))
                case DeleteSentLink(key=sent_key):
                    delete(_key(f"SENT#{sent_key}", "SENT"))
                case DeleteOutbox(key=outbox_key):
                    delete(_key(f"OUTBOX#{outbox_key}", "OUTBOX"))
                case DeleteStatuses(provider=provider, message_id=message_id):
                    for item in self._query_partition(_status_pk(provider, message_id)):
                        delete(_key(item["pk"]["S"], item["sk"]["S"]))
                case DeleteMerge(merge_id=merge_id):
                    delete(_merge_key(merge_id))
                case MarkDone(key=key, expires_at=expires_at):
                    requests[(f"DEDUPE#{key}", "DEDUPE")] = {"PutRequest": {"Item": _done_item(key, expires_at)}}
                case DeleteCustomer(customer_id=customer_id):
                    delete(_key(f"CUST#{customer_id}", "PROFILE"))
                case _:
                    raise TypeError(f"not an erasure step: {type(write).__name__}")
        self._batch_write(list(requests.values()))

    # --- plumbing --------------------------------------------------------------------------------

    def _actions(self, write: Write) -> list[dict]:
        """The TransactWriteItems actions of one write."""
        table = self._table
        match write:
            case PutCustomer():
                # The version is a top-level attribute so writes can be conditioned on it.
                put: dict[str, Any] = {"TableName": table, "Item": {
                    **_key(f"CUST#{write.customer_id}", "PROFILE"), "doc": {"S": write.doc},
                    "version": {"N": str(write.version)},
                    # The sparse segment indexes' keys (see the module docstring).
                    **{f"seg{slot}": {"S": value} for slot, value in write.indexed}}}
                if write.expected_version is not None:
                    put.update(ConditionExpression="#version = :expected", ExpressionAttributeNames={"#version": "version"},
                               ExpressionAttributeValues={":expected": {"N": str(write.expected_version)}})
                return [{"Put": put}]
            case ClaimIdentifier():
                put = {"TableName": table, "Item": {**_ident_key(write.key), "customer_id": {"S": write.owner}},
                       "ConditionExpression": "attribute_not_exists(pk)", "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
                if write.allow_same_owner:
                    put.update(ConditionExpression="attribute_not_exists(pk) OR customer_id = :owner",
                               ExpressionAttributeValues={":owner": {"S": write.owner}})
                return [{"Put": put}]
            case IdentifierMove():
                return [{"Update": {
                    "TableName": table, "Key": _ident_key(write.key), "UpdateExpression": "SET customer_id = :to",
                    "ConditionExpression": "customer_id = :from",
                    "ExpressionAttributeValues": {":to": {"S": write.to_customer}, ":from": {"S": write.from_customer}},
                }}]
            case TakeParked():
                return [{"Delete": {"TableName": table, "Key": _parked_key(write.contact_id),
                                    "ConditionExpression": "attribute_exists(pk)"}}]
            case RequireNotErased():
                # A ConditionCheck in all but name: deleting a tombstone that must not exist is a
                # no-op, and needs only the DeleteItem permission the hub already has.
                return [{"Delete": {"TableName": table, "Key": _key(f"CUST#{write.customer_id}", "TOMBSTONE"),
                                    "ConditionExpression": "attribute_not_exists(pk)"}}]
            case DeleteDeadLetter():
                return [{"Delete": {"TableName": table, "Key": _key(_DEAD_LETTERS, write.letter_id)}}]
            case MarkDone(unless_done_at=moment) if moment is not None:
                return [{"Put": {"TableName": table, "Item": _done_item(write.key, write.expires_at),
                                 "ConditionExpression": _NOT_DONE_CONDITION,
                                 "ExpressionAttributeNames": {"#state": "state"},
                                 "ExpressionAttributeValues": {":done": {"S": _DONE}, ":now": _num(moment.timestamp())}}}]
            case PutContact(only_new=True):
                contact, timeline = _items(write)
                return [{"Put": {"TableName": table, "Item": contact, "ConditionExpression": "attribute_not_exists(pk)"}},
                        {"Put": {"TableName": table, "Item": timeline}}]
        return [{"Put": {"TableName": table, "Item": item}} for item in _items(write)]

    def _condition_lost(self, response: dict, owners: list[Write]) -> Exception:
        """The write whose condition failed, by the position of its cancellation reason (a single
        put's failure has no reasons: it is the only write)."""
        reasons = response.get("CancellationReasons") or [{"Code": "ConditionalCheckFailed", "Item": response.get("Item")}]
        for write, reason in zip(owners, reasons):
            if reason.get("Code") != "ConditionalCheckFailed":
                continue
            if not isinstance(write, ClaimIdentifier):
                return ConditionLost(write)
            owner = ((reason.get("Item") or {}).get("customer_id") or {}).get("S")
            if owner is None:
                # Older APIs/emulators omit the old item: one read names the owner.
                item = self._call("get_item", TableName=self._table, Key=_ident_key(write.key),
                                  ConsistentRead=True).get("Item")
                owner = item["customer_id"]["S"] if item else None
            return ConditionLost(write, owner)
        codes = [reason.get("Code") for reason in reasons]
        logger.warning("dynamodb transaction cancelled: %s", codes)
        return StoreUnavailableError("store dynamodb TransactWriteItems cancelled", detail={"reasons": codes})

    def _call(self, operation: str, **params: Any) -> dict:
        try:
            return getattr(self._client, operation)(**params)
        except ClientError as exc:
            if _conditional(exc):
                raise _ConditionFailed(exc.response) from None
            raise

    def _query_partition(self, pk: str, *, consistent: bool = True, prefix: str | None = None,
                         projection: str | None = None) -> list[dict]:
        params: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
            "ConsistentRead": consistent,
        }
        if prefix is not None:
            params["KeyConditionExpression"] += " AND begins_with(sk, :prefix)"
            params["ExpressionAttributeValues"][":prefix"] = {"S": prefix}
        if projection is not None:
            params["ProjectionExpression"] = projection
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


def _items(write: Write) -> list[dict]:
    """The items an unconditional put writes."""
    match write:
        case PutContact():
            # The contact item and its timeline copy (the customer's partition lists it by key).
            doc = {"doc": {"S": write.doc}}
            return [{**_key(f"CONTACT#{write.contact_id}", "CONTACT"), **doc},
                    {**_key(f"CUST#{write.customer_id}", f"CONTACT#{write.contact_id}"), **doc}]
        case PutCase():
            return [{**_key(f"CASE#{write.case_id}", "CASE"), "doc": {"S": write.doc}}]
        case PutCaseRef():
            return [{**_key(f"CASE#{write.case_id}", f"REF#{write.destination}"), "doc": {"S": write.doc}},
                    {**_key(f"CASEREF#{write.ref}", "CASEREF"), "case_id": {"S": write.case_id}}]
        case PutDelivery():
            return [{**_key(f"CONTACT#{write.contact_id}", f"DLV#{write.destination}"), "doc": {"S": write.doc}}]
        case PutThread():
            return [{**_thread_key(write.key), "case_id": {"S": write.case_id}}]
        case PutSentLink():
            return [{**_key(f"SENT#{write.key}", "SENT"), "contact_id": {"S": write.contact_id}}]
        case PutOutbox():
            return [{**_key(f"OUTBOX#{write.key}", "OUTBOX"), "doc": {"S": write.doc}}]
        case MarkDone():
            return [_done_item(write.key, write.expires_at)]
        case PutParked():
            return [{**_parked_key(write.contact_id), "doc": {"S": write.doc}}]
        case PutMerge():
            return [{**_merge_key(write.merge_id), "doc": {"S": write.doc}}]
        case PutDeadLetter():
            expiry = {"expires_at": _epoch(write.expires_at)} if write.expires_at is not None else {}
            letter = {**_key(_DEAD_LETTERS, write.letter_id), "destination": {"S": write.destination},
                      "doc": {"S": write.doc}, **expiry}
            if write.customer_id is None:
                return [letter]
            # The index item holds ids only, and expires with the letter.
            return [{**letter, "customer_id": {"S": write.customer_id}},
                    {**_key(f"CUST#{write.customer_id}", f"{_FILED_LETTER}{write.letter_id}"), **expiry}]
    raise TypeError(f"not a write DynamoDbStore knows: {type(write).__name__}")


def _conditional(exc: ClientError) -> bool:
    """True when the failure is a lost condition (an outcome), not a transient cancellation or a
    request DynamoDB refuses as such."""
    code = exc.response.get("Error", {}).get("Code")
    if code == "ConditionalCheckFailedException":
        return True
    if code != "TransactionCanceledException":
        return False
    reasons = [r.get("Code") for r in exc.response.get("CancellationReasons") or []]
    return "ConditionalCheckFailed" in reasons and "ValidationError" not in reasons


def _key(pk: str, sk: str) -> dict:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def _scan_position(cursor: str) -> dict:
    """The Scan's start key from a `reindex_customers` cursor (the JSON [pk, sk] it returned)."""
    try:
        pk, sk = json.loads(cursor)
    except (ValueError, TypeError):
        raise StoreRejectedError("not a reindex cursor this store returned") from None
    if not isinstance(pk, str) or not isinstance(sk, str):
        raise StoreRejectedError("not a reindex cursor this store returned")
    return _key(pk, sk)


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


def _merge_key(merge_id: str) -> dict:
    return _key(f"MERGE#{merge_id}", "MERGE")


def _done_item(key: str, expires_at: datetime) -> dict:
    return {**_dedupe_key(key), "state": {"S": _DONE}, "expires_at": _epoch(expires_at)}


def _num(value: float) -> dict:
    return {"N": f"{value:.6f}"}


def _epoch(moment: datetime) -> dict:
    """Whole epoch seconds: the unit DynamoDB's TTL reads."""
    return {"N": str(int(moment.timestamp()))}
