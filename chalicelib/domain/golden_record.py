"""The golden record: one value per customer attribute, chosen from what each source said. Pure.

Every source's latest observation is kept (`Customer.observations`), and the surviving value is
recomputed from them by the attribute's survivorship rule, so a rule change or a late, lower-
priority source never destroys information, and conflicts stay visible as data-quality flags.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib.domain.identifiers import IdentifierKind
from chalicelib.domain.models import AttributeValue, Customer
from chalicelib.domain.policies import SurvivorshipPolicy, SurvivorshipRule


#: Flags a record can carry (see `quality_flags`).
INVALID_PHONE = "invalid_phone"
MISSING_EMAIL = "missing_email"
MISSING_PHONE = "missing_phone"
CONFLICTING_NAMES = "conflicting_names"


def observe(
    customer: Customer, values: dict[str, Any], *, source: str, at: datetime, rules: SurvivorshipPolicy
) -> Customer:
    """The customer with `values` observed from `source` at `at`, survivors recomputed.

    A value of None withdraws that source's observation (e.g. a CRM clearing a field).
    """
    observations = {name: dict(by_source) for name, by_source in customer.observations.items()}
    attributes = dict(customer.attributes)
    for name, value in values.items():
        by_source = observations.setdefault(name, {})
        if value is None:
            by_source.pop(source, None)
        else:
            previous = by_source.get(source)
            if previous is not None and previous.updated_at > at:
                continue  # an older observation arriving late never replaces a newer one
            by_source[source] = AttributeValue(value=value, source=source, updated_at=at)
        survivor = _survivor(by_source, rules.rule_for(name))
        if survivor is None:
            attributes.pop(name, None)
            observations.pop(name, None)
        else:
            attributes[name] = survivor
    return customer.model_copy(update={"observations": observations, "attributes": attributes})


def combine_observations(
    first: Customer, second: Customer, *, into: Customer, rules: SurvivorshipPolicy
) -> Customer:
    """`into` with the observations of both customers (per attribute and source, the newer one
    wins), survivors recomputed: what a merge does to the golden record."""
    observations: dict[str, dict[str, AttributeValue]] = {}
    for customer in (first, second):
        for name, by_source in customer.observations.items():
            merged = observations.setdefault(name, {})
            for source, value in by_source.items():
                if source not in merged or value.updated_at > merged[source].updated_at:
                    merged[source] = value
    issues = dict(first.quality_issues)
    for flag, at in second.quality_issues.items():
        issues[flag] = max(at, issues.get(flag, at))
    return _with_survivors(into.model_copy(update={"observations": observations, "quality_issues": issues}), rules)


def restore_observations(
    current: Customer, *, before: Customer, absorbed: Customer, rules: SurvivorshipPolicy
) -> Customer:
    """`current` without what a merge brought in from `absorbed`: what unmerging does.

    An observation (attribute and source) is taken back when it is exactly the one the absorbed
    customer had; the survivor's own value from before the merge then returns. Anything observed
    since (a newer value from any source) stays: nothing learned after the merge is lost.
    """
    observations = {name: dict(by_source) for name, by_source in current.observations.items()}
    for name, by_source in absorbed.observations.items():
        for source, value in by_source.items():
            if observations.get(name, {}).get(source) != value:
                continue  # observed anew since the merge
            own = before.observations.get(name, {}).get(source)
            if own is not None:
                observations[name][source] = own
            else:
                del observations[name][source]
        if name in observations and not observations[name]:
            del observations[name]
    issues = dict(current.quality_issues)
    for flag, at in absorbed.quality_issues.items():
        if issues.get(flag) == at:
            if flag in before.quality_issues:
                issues[flag] = before.quality_issues[flag]
            else:
                del issues[flag]
    return _with_survivors(current.model_copy(update={"observations": observations, "quality_issues": issues}), rules)


def _with_survivors(customer: Customer, rules: SurvivorshipPolicy) -> Customer:
    attributes = {}
    for name, by_source in customer.observations.items():
        survivor = _survivor(by_source, rules.rule_for(name))
        if survivor is not None:
            attributes[name] = survivor
    return customer.model_copy(update={"attributes": attributes})


def record_issue(customer: Customer, flag: str, *, at: datetime) -> Customer:
    return customer.model_copy(update={"quality_issues": {**customer.quality_issues, flag: at}})


def quality_flags(customer: Customer) -> list[str]:
    """Data-quality flags, sorted: recorded issues plus what the record itself shows."""
    flags = set(customer.quality_issues)
    kinds = {identifier.kind for identifier in customer.identifiers}
    if IdentifierKind.EMAIL not in kinds:
        flags.add(MISSING_EMAIL)
    if IdentifierKind.PHONE not in kinds:
        flags.add(MISSING_PHONE)
    names = {_comparable(o.value) for o in customer.observations.get("name", {}).values()}
    if len(names) > 1:
        flags.add(CONFLICTING_NAMES)
    return sorted(flags)


def _survivor(by_source: dict[str, AttributeValue], rule: SurvivorshipRule) -> AttributeValue | None:
    if not by_source:
        return None
    if rule.rule == "source_priority":
        rank = {source: index for index, source in enumerate(rule.sources)}
        unranked = len(rank)
        return min(
            by_source.values(),
            key=lambda o: (rank.get(o.source, unranked), -o.updated_at.timestamp(), o.source),
        )
    return max(by_source.values(), key=lambda o: (o.updated_at, o.source))


def _comparable(value: Any) -> Any:
    # "Jana Schmidt" and "jana  schmidt" are one name, not a conflict.
    return " ".join(value.casefold().split()) if isinstance(value, str) else value
