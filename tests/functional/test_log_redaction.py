"""What the running hub writes to its log when a request fails unexpectedly: the traceback, with
the personal data the failing code echoed masked."""

from __future__ import annotations

import json
import sqlite3

from tests.functional.conftest import API_KEY

PHONE = "+4915123456789"
EMAIL = "jana.schmidt@example.com"


def test_a_500s_logged_traceback_masks_the_phone_number_and_email_the_error_echoed(running, capsys):
    store = running.hub.store

    def failing_lookup(identifiers):
        # A driver error echoing the values it was given, as database and vendor errors do.
        raise sqlite3.OperationalError(f"disk I/O error reading {identifiers[0].key} for {EMAIL}")

    store.find_customer_ids = failing_lookup
    try:
        response = running.request("GET", "/v1/customers?identifier=phone:" + PHONE.replace("+", "%2B"),
                                   headers={"Authorization": f"Bearer {API_KEY}"})
    finally:
        del store.find_customer_ids

    assert response.status == 500
    assert json.loads(response.body)["error"] == {"code": "internal_error", "message": "internal error", "detail": {}}
    log = capsys.readouterr().err
    assert "unhandled OperationalError on GET" in log
    assert "Traceback (most recent call last)" in log and "in failing_lookup" in log
    assert "OperationalError: disk I/O error reading phone:[phone] for [email]" in log
    assert "4915123456789" not in log and EMAIL not in log
