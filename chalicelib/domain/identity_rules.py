"""Identity resolution rules: which identifiers may tie a contact to a customer. Pure.

A false merge (two people as one customer) is worse than a missed link, so every identifier must
pass the rules before it is looked up or linked: its kind may link, it is not blocked (shared
numbers, no-reply addresses), it is verified (unless configured otherwise), and the customer has
room for another value of its kind. Each decision is recorded with the rule that made it.
"""

from __future__ import annotations

import re
from fnmatch import translate

from chalicelib.domain.identifiers import Identifier, IdentifierKind
from chalicelib.domain.models import Customer, IdentifierDecision, Party
from chalicelib.domain.policies import IdentityPolicy
from chalicelib.domain.values import Record, Value



#: The owner recorded for identifiers the hub learned to block: a WhatsApp account seen with a
#: blocked (shared) number is that same shared account, even when a later message omits the number.
BLOCKED_OWNER = "!blocked"


class LinkPlan(Record):
    """Which of a contact's identifiers may link it to a customer:

    * `candidates`: identifiers that may be looked up and linked, highest priority first.
    * `learned_blocks`: identifiers to remember as blocked (their owner becomes `BLOCKED_OWNER`).
    * `verified`: keys of the candidates the channel verified: only these may merge two customers.
    * `continuity`: unproved email addresses that may still join by email continuity
      (`email_continuity`): never candidates, so they never choose between customers or merge them.
    """

    __slots__ = ("candidates", "decisions", "learned_blocks", "verified", "continuity")

    def __init__(
        self, candidates: list[Identifier] | None = None, decisions: list[IdentifierDecision] | None = None,
        learned_blocks: list[Identifier] | None = None, verified: set[str] | None = None,
        continuity: list[Identifier] | None = None,
    ) -> None:
        self.candidates = [] if candidates is None else candidates
        self.decisions = [] if decisions is None else decisions
        self.learned_blocks = [] if learned_blocks is None else learned_blocks
        self.verified = set() if verified is None else verified
        self.continuity = [] if continuity is None else continuity

    def hold_back_learned_blocks(self, owners: dict[str, str]) -> None:
        """Drop candidates the hub learned to block (looked up like any identifier)."""
        for identifier in [i for i in self.candidates if owners.get(i.key) == BLOCKED_OWNER]:
            self.candidates.remove(identifier)
            self.decisions.append(IdentifierDecision(
                identifier=identifier.key, outcome="blocked", rule="blocked: seen with a blocked number before",
            ))


class Choice(Value):
    customer_id: str | None
    matched: Identifier | None = None
    #: Other customers owning verified candidates, each with the identifier that ties it to the
    #: contact: what a merge would join.
    others: tuple[tuple[str, Identifier], ...] = ()


class IdentityRules:
    def __init__(self, settings: IdentityPolicy) -> None:
        self._settings = settings
        self._priority = {kind: index for index, kind in enumerate(settings.link_kinds)}
        self._blocked = [(pattern, re.compile(translate(pattern.lower()))) for pattern in settings.blocked]

    def plan(self, party: Party) -> LinkPlan:
        """Sort the contact's identifiers into candidates and held-back ones, with reasons."""
        plan = LinkPlan()
        verified_keys = {i.key for i in party.identifiers}
        # An unverified claim of an identifier that is also verified adds nothing (and must not
        # be recorded as held back).
        claims = [(i, True) for i in party.identifiers]
        claims += [(i, False) for i in party.unverified if i.key not in verified_keys]
        blocked_numbers = [
            i for i in party.identifiers if i.kind is IdentifierKind.PHONE and self._blocked_by(i) is not None
        ]
        # Email continuity is for contacts nothing proves: an email whose From is all there is.
        # A web chat visitor's typed address rides on a proved visitor id and stays a claim.
        continuity = self._settings.email_continuity and not party.identifiers
        for identifier, verified in claims:
            refusal = self._refusal(identifier, verified)
            if continuity and refusal is not None and refusal[0] == "unverified" and identifier.kind is IdentifierKind.EMAIL:
                if identifier not in plan.continuity:
                    plan.continuity.append(identifier)
                continue
            if refusal is None and blocked_numbers and identifier.kind is IdentifierKind.WHATSAPP_USER:
                # The WhatsApp account of a shared (blocked) number is shared too: linking by it
                # would merge the family. Remember it, for messages that carry only the account.
                refusal = ("blocked", f"blocked with its WhatsApp number ({blocked_numbers[0].kind.value})")
                plan.learned_blocks.append(identifier)
            if refusal is None:
                if identifier not in plan.candidates:
                    plan.candidates.append(identifier)
                if verified:
                    plan.verified.add(identifier.key)
            else:
                plan.decisions.append(IdentifierDecision(identifier=identifier.key, outcome=refusal[0], rule=refusal[1]))
        plan.candidates.sort(key=lambda i: self._priority[i.kind])
        return plan

    def choose(self, plan: LinkPlan, owners: dict[str, str]) -> Choice:
        """The owner of the highest-priority candidate that has one. Verified candidates owned
        by other customers are returned as `others` (the merge candidates, when `auto_merge`);
        every such conflict is recorded."""
        matched: Identifier | None = None
        customer_id: str | None = None
        others: dict[str, Identifier] = {}
        for identifier in plan.candidates:
            owner = owners.get(identifier.key)
            if owner is None:
                continue
            if customer_id is None:
                customer_id, matched = owner, identifier
                plan.decisions.append(IdentifierDecision(
                    identifier=identifier.key, outcome="matched", rule=f"link_kinds: {identifier.kind.value}"
                ))
            elif owner != customer_id:
                mergeable = identifier.key in plan.verified and matched.key in plan.verified and self._settings.auto_merge
                if mergeable:
                    others.setdefault(owner, identifier)
                reason = "merge considered (auto_merge)" if mergeable else (
                    "not merged: auto_merge is off" if not self._settings.auto_merge
                    else "not merged: only verified identifiers merge customers"
                )
                plan.decisions.append(IdentifierDecision(
                    identifier=identifier.key, outcome="owned_by_other_customer",
                    rule=f"link_kinds: {matched.key} matched first (priority order); {reason}",
                ))
        return Choice(customer_id, matched, tuple(others.items()))

    def additions(self, customer: Customer, plan: LinkPlan, owners: dict[str, str], *, outcome: str) -> list[Identifier]:
        """Candidates the customer does not hold yet and may take within the per-kind limits."""
        held = {i.key for i in customer.identifiers}
        counts: dict = {}
        for identifier in customer.identifiers:
            counts[identifier.kind] = counts.get(identifier.kind, 0) + 1
        added = []
        for identifier in plan.candidates:
            owner = owners.get(identifier.key)
            if identifier.key in held:
                if owner == customer.id and not any(d.identifier == identifier.key for d in plan.decisions):
                    plan.decisions.append(IdentifierDecision(
                        identifier=identifier.key, outcome="already_linked", rule="exact match"
                    ))
                continue
            if owner is not None and owner != customer.id:
                continue  # recorded by choose()
            limit = self._settings.max_per_kind.get(identifier.kind)
            if limit is not None and counts.get(identifier.kind, 0) >= limit:
                plan.decisions.append(IdentifierDecision(
                    identifier=identifier.key, outcome="limit_reached", rule=f"max_per_kind: {identifier.kind.value}={limit}"
                ))
                continue
            counts[identifier.kind] = counts.get(identifier.kind, 0) + 1
            added.append(identifier)
            plan.decisions.append(IdentifierDecision(
                identifier=identifier.key, outcome=outcome, rule=f"link_kinds: {identifier.kind.value}"
            ))
        return added

    def explicit_link_refusal(self, customer: Customer, identifier: Identifier) -> str | None:
        """Why an explicit link (from a CRM, via the API) is refused; None when it may be made.
        Explicit links are trusted, so only blocking and the per-kind limit apply."""
        # The messages name the rule, never the identifier: error texts must not carry personal data.
        if (index := self._blocked_by(identifier)) is not None:
            return f"the {identifier.kind.value} identifier is blocked by identity.blocked[{index}]"
        limit = self._settings.max_per_kind.get(identifier.kind)
        held = sum(1 for i in customer.identifiers if i.kind == identifier.kind)
        if identifier not in customer.identifiers and limit is not None and held >= limit:
            return f"the customer already holds {held} {identifier.kind.value} identifiers (max_per_kind {limit})"
        return None

    def _refusal(self, identifier: Identifier, verified: bool) -> tuple[str, str] | None:
        if (index := self._blocked_by(identifier)) is not None:
            return "blocked", f"blocked: {self._blocked[index][0]}"
        if identifier.kind not in self._priority:
            return "kind_not_linkable", f"link_kinds does not include {identifier.kind.value}"
        if not verified and not self._settings.trust_unverified:
            return "unverified", "trust_unverified: false"
        return None

    def _blocked_by(self, identifier: Identifier) -> int | None:
        """The index of the first `blocked` pattern the identifier matches."""
        key = identifier.key.lower()
        return next((index for index, (_, regex) in enumerate(self._blocked) if regex.match(key)), None)
