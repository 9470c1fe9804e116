"""Which hub case a vendor's ticket stands for, as a callback names it."""

from __future__ import annotations

from chalicelib.adapters.store.base import Store
from chalicelib.domain.models import Case


def ticket_case(store: Store, destination: str, ticket: str, case_hint: str | None) -> Case | None:
    """The case whose ticket at `destination` is `ticket`, or None for a ticket the hub did not
    open. A case id the callback carries (a ticket's external id) costs one read and is trusted
    only when that case's reference at the destination is this very ticket; otherwise (no hint,
    or an older ticket of the case, such as one a follow-up replaced) the link the deliverer
    wrote with the reference finds it."""
    if case_hint:
        case = store.get_case(case_hint)
        ref = case.external_refs.get(destination) if case is not None else None
        if ref is not None and ref.ref == ticket:
            return case
    case_id = store.find_case_by_ref(destination, ticket)
    return store.get_case(case_id) if case_id is not None else None
