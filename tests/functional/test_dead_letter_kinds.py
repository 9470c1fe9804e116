"""`GET /v1/dead-letters?kind=`: the hub filters dead letters by kind itself, across store pages,
so the console and scripts never page through every letter to find a destination's failed sends.
Through HTTP on the embedded hub; the letters are put in its store directly, as the delivery and
send workers would file them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chalicelib.domain.models import DeadLetter
from chalicelib.service import operations

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _letter(n: int, kind: str, destination: str = "crm") -> DeadLetter:
    """A dead letter whose job is of `kind`, as the workers file them (only a message's letter
    names its kind; a delivery's job names its own). The jobs are cut short: listing never reads
    more of them."""
    job = {"contact": {"kind": "contact", "delivery_id": f"dlv_{n:04d}", "destination": destination},
           "customer_event": {"kind": "customer_event", "event_type": "case.closed", "customer_id": "cus_1"},
           "message": {"id": f"ct_{n}", "channel": "sms"}}[kind]
    return DeadLetter(id=f"dlv_{n:04d}", destination=destination, subject_id=f"ct_{n}", reason=f"refused {n}",
                      attempts=3, dead_at=T0, job=json.dumps(job), kind="message" if kind == "message" else None,
                      expires_at=datetime.now(UTC) + timedelta(days=7))


@pytest.fixture
def letters(running, monkeypatch):
    """Twelve letters of three kinds over two destinations, and store pages of four letters, so a
    kind's letters are spread over several of them."""
    monkeypatch.setattr(operations, "KIND_SCAN_PAGE_SIZE", 4)
    kinds = ["contact", "contact", "message", "customer_event"] * 3
    for n, kind in enumerate(kinds):
        running.hub.store.put_dead_letter(_letter(n, kind, destination="crm" if n % 2 == 0 else "tickets"))
    return kinds


def _page(running, query: str) -> dict:
    answer = running.api(f"/v1/dead-letters?{query}")
    assert answer.status == 200, answer.body
    return answer.json()


def test_a_kind_is_filtered_across_store_pages_and_paged_by_cursor(running, letters):
    first = _page(running, "kind=message&limit=2")
    rest = _page(running, f"kind=message&limit=2&cursor={first['next_cursor']}")

    assert [letter["id"] for letter in first["data"]] == ["dlv_0002", "dlv_0006"]
    assert [letter["id"] for letter in rest["data"]] == ["dlv_0010"]
    assert rest["next_cursor"] is None
    assert {letter["kind"] for letter in first["data"] + rest["data"]} == {"message"}


def test_a_kind_and_a_destination_combine(running, letters):
    events = _page(running, "kind=customer_event&destination=tickets")["data"]
    contacts = _page(running, "kind=contact&destination=crm")["data"]

    assert [letter["id"] for letter in events] == ["dlv_0003", "dlv_0007", "dlv_0011"]
    assert [letter["id"] for letter in contacts] == ["dlv_0000", "dlv_0004", "dlv_0008"]


def test_a_call_reads_a_bounded_number_of_store_pages_and_says_where_to_go_on(running, letters, monkeypatch):
    monkeypatch.setattr(operations, "KIND_SCAN_PAGES", 1)
    pages, cursor = [], None
    while True:
        page = _page(running, "kind=customer_event" + (f"&cursor={cursor}" if cursor else ""))
        pages.append([letter["id"] for letter in page["data"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break

    # One store page of four letters per call: each holds one customer event.
    assert pages == [["dlv_0003"], ["dlv_0007"], ["dlv_0011"]]


def test_the_last_letters_of_a_kind_come_without_a_cursor(running, letters):
    last = _page(running, "kind=customer_event&limit=3")

    assert [letter["id"] for letter in last["data"]] == ["dlv_0003", "dlv_0007", "dlv_0011"]
    assert last["next_cursor"] is None


def test_an_unknown_kind_is_400_naming_the_parameter_and_an_empty_one_is_none(running, letters):
    answer = running.api("/v1/dead-letters?kind=parcel")

    assert answer.status == 400
    assert answer.json()["error"]["detail"] == {"parameter": "kind"}
    assert "contact, customer_event, message" in answer.json()["error"]["message"]
    assert len(_page(running, "kind=&limit=100")["data"]) == len(letters)


@pytest.mark.parametrize("job", ["[1, 2]", "null", '"text"', "{not json", '{"kind": "parcel"}'])
def test_a_letter_whose_job_does_not_say_its_kind_is_listed_as_a_contacts(running, job):
    letter = _letter(1, "contact").model_copy(update={"job": job})
    running.hub.store.put_dead_letter(letter)

    assert [entry["kind"] for entry in _page(running, "kind=contact")["data"]] == ["contact"]
    assert _page(running, "kind=customer_event")["data"] == []


def test_hubctl_lists_one_kind(running, letters, tmp_path):
    cli = subprocess.run(
        [sys.executable, "-m", "chalicelib.cli", "dead-letters", "list", "--kind", "message"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
        env={**os.environ, "HUB_CONFIG": str(tmp_path / "hub.yaml"), "HUB_DATA_DIR": str(running.data_dir)},
    )

    assert cli.returncode == 0, cli.stderr
    lines = cli.stdout.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["dlv_0002", "dlv_0006", "dlv_0010"]
    assert all("  message  " in line for line in lines[:-1])
    assert lines[-1] == "3 dead letters"
