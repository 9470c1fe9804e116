"""The consent ledger: per channel and purpose, whether the customer agreed to hear from us.

Each entry holds the state (`opted_in`, `opted_out`, `unknown`), where it came from (`source`:
`keyword:STOP`, `provider:twilio_opt_out`, `api:<key name>`, `complaint:ses`, `error:21610`), when
it was stated and what proves it (`evidence`: the contact id, the API call's id), plus a bounded
history of changes. The rules the send path enforces (`allows`):

- `service` (answers, notifications about the customer's own case): refused only when explicitly
  `opted_out`; an unknown state allows it, as the customer wrote to us first.
- `marketing`: needs an explicit `opted_in` for marketing, and no `service` opt-out on the channel.

SMS and MMS are one consent channel (`sms`): the customer's phone number, where Twilio's STOP
blocks both. Every other channel is its own (`whatsapp`, `email`, ...), so a STOP on SMS never
stops WhatsApp.

Pure functions over plain dicts: the ledger is stored in the customer record (`Customer.consent`),
which every contact reads and writes anyway, so recording and enforcing consent cost no extra I/O.
"""

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from chalicelib.domain.defaults import empty_list

ConsentState = Literal["opted_in", "opted_out", "unknown"]
Purpose = Literal["service", "marketing"]

OPTED_IN: ConsentState = "opted_in"
OPTED_OUT: ConsentState = "opted_out"
UNKNOWN: ConsentState = "unknown"
STATES: tuple[str, ...] = get_args(ConsentState)
PURPOSES: tuple[str, ...] = get_args(Purpose)

#: Consent channels: the `Channel` values, with MMS folded into SMS (one phone number, one
#: consent). Kept here rather than derived from `Channel` because `models.py` imports this module;
#: a unit test keeps the two in step.
CHANNELS: tuple[str, ...] = ("sms", "whatsapp", "email", "webchat", "messenger", "instagram", "telegram", "slack", "x")
ALIASES: dict[str, str] = {"mms": "sms"}

#: Changes kept per entry (the current one included): enough to show an operator the recent
#: back-and-forth, small enough that the customer record stays far below its size limit.
HISTORY_LIMIT = 10

#: The time given to states converted from the old `{channel: state}` shape: older than anything
#: recorded since, so any real change supersedes them.
LEGACY_AT = datetime(1970, 1, 1, tzinfo=timezone.utc)
LEGACY_SOURCE = "legacy"
#: Values the old shape used for "no" and "yes" (`merging.REFUSALS` named the refusals).
_LEGACY_REFUSALS = frozenset({"opted_out", "revoked", "denied"})
_LEGACY_GRANTS = frozenset({"opted_in", "granted"})


class ConsentChange(BaseModel):
    """One statement of consent: what, from where, when, and its proof."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    state: ConsentState
    source: str
    evidence: str | None = None
    at: datetime


class ConsentEntry(BaseModel):
    """A channel's consent for one purpose: the newest statement, and the history it won over."""

    model_config = ConfigDict(defer_build=True)

    state: ConsentState
    source: str
    evidence: str | None = None
    at: datetime
    #: The latest changes, oldest first (the current one included), at most `HISTORY_LIMIT`.
    #: A statement older than the current one is kept here but does not change `state`.
    history: list[ConsentChange] = Field(default_factory=empty_list)

    @property
    def current(self) -> ConsentChange:
        return ConsentChange(state=self.state, source=self.source, evidence=self.evidence, at=self.at)


def consent_channel(channel: str) -> str:
    """The ledger key of a channel (`mms` → `sms`). Raises ValueError naming the known channels."""
    key = ALIASES.get(str(channel), str(channel))
    if key not in CHANNELS:
        raise ValueError(f"unknown channel {str(channel)[:40]!r}; known: {', '.join((*CHANNELS, *ALIASES))}")
    return key


def _upgrade(value: Any) -> Any:
    """Stored customers from before the ledger hold `{channel: "opted_in"}`: read them as entries.
    A refusal becomes an opt-out of both purposes (a "no" must never be lost); a grant opts in to
    `service` only (a purpose-less "yes" proves no marketing consent); anything else is dropped.
    `mms` entries fold into `sms`."""
    if not isinstance(value, Mapping):
        return value
    ledger: dict[str, Any] = {}
    for channel, entries in value.items():
        if isinstance(entries, str):
            entries = _legacy(entries)
            if not entries:
                continue
        if not isinstance(entries, Mapping):
            ledger[channel] = entries  # for pydantic to name the problem
            continue
        folded = ledger.setdefault(ALIASES.get(channel, channel), {})
        for purpose, entry in entries.items():
            if purpose in folded:
                entry = _combined(ConsentEntry.model_validate(folded[purpose]), ConsentEntry.model_validate(entry))
            folded[purpose] = entry
    return ledger


def _legacy(state: str) -> dict[str, dict]:
    if state in _LEGACY_REFUSALS:
        return {purpose: _legacy_entry(OPTED_OUT) for purpose in PURPOSES}
    if state in _LEGACY_GRANTS:
        return {"service": _legacy_entry(OPTED_IN)}
    return {}


def _legacy_entry(state: ConsentState) -> dict:
    change = {"state": state, "source": LEGACY_SOURCE, "evidence": None, "at": LEGACY_AT}
    return {**change, "history": [change]}


#: `Customer.consent`: consent channel → purpose → entry. Validating accepts the old shape.
ConsentLedger = Annotated[dict[str, dict[Purpose, ConsentEntry]], BeforeValidator(_upgrade)]


def _supersedes(change: ConsentChange, current: ConsentChange) -> bool:
    """A newer statement wins; at the same instant an opt-out wins (the safe reading)."""
    return (change.at, change.state == OPTED_OUT) >= (current.at, current.state == OPTED_OUT)


def _entry(current: ConsentChange, history: list[ConsentChange], limit: int) -> ConsentEntry:
    kept = sorted(dict.fromkeys(history), key=lambda c: c.at)[-limit:]
    return ConsentEntry(**current.model_dump(), history=kept)


def _combined(first: ConsentEntry, second: ConsentEntry, limit: int = HISTORY_LIMIT) -> ConsentEntry:
    current = second.current if _supersedes(second.current, first.current) else first.current
    return _entry(current, [*first.history, *second.history], limit)


def record(
    ledger: Mapping[str, Mapping[str, ConsentEntry]], channel: str, purpose: str, state: str, source: str,
    evidence: str | None, at: datetime, *, limit: int = HISTORY_LIMIT,
) -> dict[str, dict[str, ConsentEntry]]:
    """The ledger with one more statement. It becomes the entry's state unless the entry holds a
    newer one (queues and providers deliver out of order); either way it joins the history.
    Recording the same statement again changes nothing. Raises ValueError for an unknown channel,
    purpose or state."""
    key = consent_channel(channel)
    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {str(purpose)[:40]!r}; known: {', '.join(PURPOSES)}")
    if state not in STATES:
        raise ValueError(f"unknown state {str(state)[:40]!r}; known: {', '.join(STATES)}")
    change = ConsentChange(state=state, source=source, evidence=evidence, at=at)
    entries = dict(ledger.get(key, {}))
    entry = entries.get(purpose)
    if entry is None:
        entries[purpose] = _entry(change, [change], limit)
    elif change in entry.history:
        return {k: dict(v) for k, v in ledger.items()}
    else:
        current = change if _supersedes(change, entry.current) else entry.current
        entries[purpose] = _entry(current, [*entry.history, change], limit)
    return {**{k: dict(v) for k, v in ledger.items()}, key: entries}


def opt_out(
    ledger: Mapping[str, Mapping[str, ConsentEntry]], channel: str, *, source: str, evidence: str | None,
    at: datetime, limit: int = HISTORY_LIMIT,
) -> dict[str, dict[str, ConsentEntry]]:
    """The ledger with `channel` opted out for every purpose: what a STOP, a provider's opt-out
    report (`error:21610`) or an email complaint (`complaint:ses`) states."""
    for purpose in PURPOSES:
        ledger = record(ledger, channel, purpose, OPTED_OUT, source, evidence, at, limit=limit)
    return dict(ledger)


def state_of(ledger: Mapping[str, Mapping[str, ConsentEntry]], channel: str, purpose: str) -> str:
    entry = ledger.get(consent_channel(channel), {}).get(purpose)
    return entry.state if entry is not None else UNKNOWN


def allows(ledger: Mapping[str, Mapping[str, ConsentEntry]], channel: str, purpose: str) -> bool:
    """Whether a message of `purpose` may go out on `channel`: `service` unless opted out;
    `marketing` only with a marketing opt-in and no service opt-out on the channel."""
    if state_of(ledger, channel, "service") == OPTED_OUT:
        return False
    if purpose == "service":
        return True
    if purpose == "marketing":
        return state_of(ledger, channel, "marketing") == OPTED_IN
    raise ValueError(f"unknown purpose {str(purpose)[:40]!r}; known: {', '.join(PURPOSES)}")


def merge_ledgers(
    survivor: Mapping[str, Mapping[str, ConsentEntry]], absorbed: Mapping[str, Mapping[str, ConsentEntry]],
) -> dict[str, dict[str, ConsentEntry]]:
    """One person's ledger from two records (a customer merge): histories join; where either
    record's current state is an opt-out it stands (the merge may join a person with a number they
    refused on), otherwise the newer statement wins."""
    merged = {k: dict(v) for k, v in survivor.items()}
    for channel, entries in absorbed.items():
        for purpose, theirs in entries.items():
            mine = merged.setdefault(channel, {}).get(purpose)
            if mine is None:
                merged[channel][purpose] = theirs
                continue
            combined = _combined(mine, theirs)
            refusals = [e.current for e in (mine, theirs) if e.state == OPTED_OUT]
            if refusals and combined.state != OPTED_OUT:
                combined = _entry(max(refusals, key=lambda c: c.at), combined.history, HISTORY_LIMIT)
            merged[channel][purpose] = combined
    return merged


def unmerge_ledger(
    current: Mapping[str, Mapping[str, ConsentEntry]], *, survivor_before: Mapping[str, Mapping[str, ConsentEntry]],
    absorbed_before: Mapping[str, Mapping[str, ConsentEntry]],
) -> dict[str, dict[str, ConsentEntry]]:
    """The survivor's ledger after an unmerge: entries only the absorbed customer had go back with
    it; everything else (the survivor's own, and what was stated while merged) stays."""
    kept: dict[str, dict[str, ConsentEntry]] = {}
    for channel, entries in current.items():
        for purpose, entry in entries.items():
            theirs_only = (purpose in absorbed_before.get(channel, {})
                           and purpose not in survivor_before.get(channel, {}))
            if not theirs_only:
                kept.setdefault(channel, {})[purpose] = entry
    return kept
