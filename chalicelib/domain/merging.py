"""Merging two customers into one, and taking a merge back. Pure: the service does the I/O.

A merge never copies contacts: the absorbed customer stays as a redirect (`merged_into`), its
identifiers move to the survivor, and the survivor's timeline is the union of both partitions
(`merged_from`). That keeps a merge one small atomic write however long the history is, and
makes it reversible: the audit record keeps both customers as they were, and unmerging restores
the absorbed one and takes back from the survivor exactly what the merge gave it.
"""

from __future__ import annotations

from datetime import datetime

from chalicelib.domain import activity
from chalicelib.domain.consent import merge_ledgers, unmerge_ledger
from chalicelib.domain.golden_record import combine_observations, restore_observations
from chalicelib.domain.ids import digest_id
from chalicelib.domain.models import Customer, MergeRecord, MergeSummary, ReplyTarget
from chalicelib.domain.policies import CustomerLimits, IdentityPolicy, SurvivorshipPolicy
from chalicelib.domain.values import Value


#: A merge re-points every identifier of the absorbed customer in one transaction; DynamoDB takes
#: 100 items per transaction, and the customers, cases and audit record need a few.
MAX_MOVED_IDENTIFIERS = 90


def survivor_first(first: Customer, second: Customer) -> tuple[Customer, Customer]:
    """(survivor, absorbed): the older customer survives, ties broken by id, so every worker and
    every retry picks the same one, and the customer id destinations know longest stays valid."""
    return tuple(sorted((first, second), key=lambda c: (c.created_at, c.id)))  # type: ignore[return-value]


def merge_refusal(
    survivor: Customer, absorbed: Customer, settings: IdentityPolicy, *, explicit: bool = False
) -> str | None:
    """Why the two customers must not be merged; None when they may be. Names rules, never values.
    An `explicit` merge (an operator's decision) may join customers an unmerge separated."""
    if survivor.erasing or absorbed.erasing:
        return "a customer is being erased"
    if not explicit and (absorbed.id in survivor.no_merge_with or survivor.id in absorbed.no_merge_with):
        return "unmerged before: customers an operator separated are not merged again automatically"
    for kind in settings.merge_protection:
        mine = {i.key for i in survivor.identifiers if i.kind is kind}
        theirs = {i.key for i in absorbed.identifiers if i.kind is kind}
        if mine and theirs and not mine & theirs:
            return f"merge_protection: the customers hold different {kind.value} identifiers"
    combined = {i.key: i for i in [*survivor.identifiers, *absorbed.identifiers]}.values()
    for kind, limit in settings.max_per_kind.items():
        held = sum(1 for i in combined if i.kind is kind)
        if held > limit:
            return f"max_per_kind: {kind.value}={limit} (the merged customer would hold {held})"
    moved = [i for i in absorbed.identifiers if i not in survivor.identifiers]
    if len(moved) > MAX_MOVED_IDENTIFIERS:
        return f"the absorbed customer holds more than {MAX_MOVED_IDENTIFIERS} identifiers"
    return None


class MergedPair(Value):
    survivor: Customer
    absorbed: Customer
    record: MergeRecord


def merge(
    survivor: Customer, absorbed: Customer, *, now: datetime, trigger: str, matched: list[str],
    rules: SurvivorshipPolicy,
) -> MergedPair:
    """Both customers' next versions and the audit record. Cases are the caller's: it decides
    which open case continues (`MergeRecord.case_owners` and the customers' `open_case`)."""
    merge_id = digest_id("mrg", f"{survivor.id}:{absorbed.id}:{survivor.version}:{absorbed.version}")
    moved = [i for i in absorbed.identifiers if i not in survivor.identifiers]
    summary = dict(merge_id=merge_id, merged_at=now, trigger=trigger)
    combined = combine_observations(survivor, absorbed, into=survivor, rules=rules)
    # One person's consent: where the two disagree, a refusal given on either record stands.
    consent = merge_ledgers(survivor.consent, absorbed.consent)
    separated = {survivor.id, absorbed.id}
    held = {i.key for i in survivor.identifiers}
    # What either proved stays proved; what only continuity gave stays continuity.
    unverified = [k for k in survivor.unverified_identifiers if k not in absorbed.identifiers_proved()]
    unverified += [k for k in absorbed.unverified_identifiers if k not in held]
    next_survivor = combined.model_copy(update={
        "identifiers": [*survivor.identifiers, *moved],
        "unverified_identifiers": unverified,
        "consent": consent,
        "reply_targets": merge_reply_targets(survivor.reply_targets, absorbed.reply_targets),
        "activity": activity.combine(survivor.activity, absorbed.activity),
        "merged_from": [*survivor.merged_from, absorbed.id, *absorbed.merged_from],
        "no_merge_with": [c for c in dict.fromkeys([*survivor.no_merge_with, *absorbed.no_merge_with])
                          if c not in separated],
        "merges": [*survivor.merges, MergeSummary(role="survivor", other_customer_id=absorbed.id, **summary)],
        "updated_at": now,
        "version": survivor.version + 1,
    })
    next_absorbed = absorbed.model_copy(update={
        "identifiers": [],
        "unverified_identifiers": [],
        "open_case": None,
        "merged_into": survivor.id,
        "merges": [*absorbed.merges, MergeSummary(role="absorbed", other_customer_id=survivor.id, **summary)],
        "updated_at": now,
        "version": absorbed.version + 1,
    })
    record = MergeRecord(
        id=merge_id, survivor_id=survivor.id, absorbed_id=absorbed.id, merged_at=now, trigger=trigger,
        matched_identifiers=matched, moved_identifiers=moved, survivor_before=survivor, absorbed_before=absorbed,
    )
    return MergedPair(next_survivor, next_absorbed, record)


def size_refusal(survivor: Customer, record: MergeRecord, limits: CustomerLimits) -> str | None:
    """Why a merge's writes would be too large; None when they fit. The merged survivor carries
    both customers' attributes and observations, and the audit record both customers whole: a
    DynamoDB item holds 400 KB, and a survivor past `limits` would refuse every later write."""
    problem = limits.attributes_problem(len(survivor.attributes), len(survivor.model_dump_json().encode("utf-8")))
    if problem is not None:
        return f"customers limits: after the merge, {problem}"
    size = len(record.model_dump_json().encode("utf-8"))
    if size > 2 * limits.max_record_bytes:
        return (f"customers limits: the merge record (both customers as they were) would be {size} bytes, "
                f"more than the {2 * limits.max_record_bytes} allowed (twice max_record_bytes)")
    return None


def unmerge(
    record: MergeRecord, survivor: Customer, absorbed: Customer, *, now: datetime, actor: str,
    rules: SurvivorshipPolicy,
) -> MergedPair:
    """Both customers' next versions with the merge taken back, and the record marked reverted.

    The absorbed customer returns as it was before the merge. The survivor gives back the moved
    identifiers and the absorbed customer's observations, and keeps everything learned after the
    merge (new identifiers, attributes). Open cases are the caller's, as in `merge`.
    """
    moved = {i.key for i in record.moved_identifiers}
    given_back = {record.absorbed_id, *record.absorbed_before.merged_from}
    restored_survivor = restore_observations(
        survivor, before=record.survivor_before, absorbed=record.absorbed_before, rules=rules
    )
    # An address that arrived unproved with the absorbed customer and was proved while merged
    # goes back proved: the proof was of the address, whoever held it.
    still_unproved = set(survivor.unverified_identifiers)
    proved_while_merged = {k for k in record.absorbed_before.unverified_identifiers
                           if k in moved and k not in still_unproved}
    next_survivor = restored_survivor.model_copy(update={
        "identifiers": [i for i in survivor.identifiers if i.key not in moved],
        "unverified_identifiers": [k for k in survivor.unverified_identifiers if k not in moved],
        # Consent that only the absorbed customer had given goes back with it.
        "consent": unmerge_ledger(survivor.consent, survivor_before=record.survivor_before.consent,
                                  absorbed_before=record.absorbed_before.consent),
        "reply_targets": unmerge_reply_targets(survivor.reply_targets, survivor_before=record.survivor_before.reply_targets,
                                               absorbed_before=record.absorbed_before.reply_targets),
        "merged_from": [c for c in survivor.merged_from if c not in given_back],
        "merges": _reverted(survivor.merges, record.id, now),
        "no_merge_with": [*survivor.no_merge_with, record.absorbed_id],
        "updated_at": now,
        "version": survivor.version + 1,
    })
    next_absorbed = record.absorbed_before.model_copy(update={
        "unverified_identifiers": [k for k in record.absorbed_before.unverified_identifiers
                                   if k not in proved_while_merged],
        "merges": _reverted(absorbed.merges, record.id, now),
        "no_merge_with": [*record.absorbed_before.no_merge_with, record.survivor_id],
        "updated_at": now,
        "version": absorbed.version + 1,
    })
    reverted = record.model_copy(update={"reverted_at": now, "reverted_by": actor})
    return MergedPair(next_survivor, next_absorbed, reverted)


def merge_reply_targets(survivor: dict[str, ReplyTarget], absorbed: dict[str, ReplyTarget]) -> dict[str, ReplyTarget]:
    """One person's ways to answer them, from both records: per channel, provider and account
    the target of the newest message (a tie keeps the survivor's). The absorbed customer's are
    often the only ones on a channel: without them a reply to the customer on it has no recipient."""
    targets = dict(survivor)
    for key, target in absorbed.items():
        if key not in targets or target.at > targets[key].at:
            targets[key] = target
    return targets


def unmerge_reply_targets(
    current: dict[str, ReplyTarget], *, survivor_before: dict[str, ReplyTarget], absorbed_before: dict[str, ReplyTarget],
) -> dict[str, ReplyTarget]:
    """The survivor's targets with the merge taken back: a target the absorbed customer brought
    goes back with it (the survivor's own from before the merge returns in its place); one learned
    while merged, from a message on the survivor's timeline, stays."""
    targets: dict[str, ReplyTarget] = {}
    for key, target in current.items():
        if target == absorbed_before.get(key):
            if key in survivor_before:
                targets[key] = survivor_before[key]
        else:
            targets[key] = target
    return targets


def _reverted(history: list[MergeSummary], merge_id: str, now: datetime) -> list[MergeSummary]:
    return [
        entry.model_copy(update={"reverted_at": now}) if entry.merge_id == merge_id and entry.reverted_at is None else entry
        for entry in history
    ]
