"""`hubctl customers reindex` through its entry point, on the embedded (SQLite) store."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from chalicelib.adapters.store.sqlite import SqliteStore
from chalicelib.cli import main
from chalicelib.domain.models import AttributeValue, Customer
from chalicelib.settings import DEFAULT_CONFIG

AT = datetime(2026, 12, 1, tzinfo=timezone.utc)


def test_customers_reindex_indexes_the_customers_written_before(tmp_path, capsys, monkeypatch):
    config = tmp_path / "hub.yaml"
    config.write_text(DEFAULT_CONFIG.read_text() + "\ncustomers: {indexed_attributes: [postcode]}\n")
    monkeypatch.setenv("HUB_CONFIG", str(config))
    monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path))
    store = SqliteStore(str(tmp_path / "hub.db"))
    for number in range(3):
        store.create_customer(Customer(id=f"cus_{number}", attributes={
            "postcode": AttributeValue(value=f"1011{number}", source="crm", updated_at=AT)}))
    store.close()

    assert main(["customers", "reindex", "--page-size", "2"]) == 0

    assert "3 customers read, 0 reindexed (indexed attributes: postcode)" in capsys.readouterr().out
    indexed = SqliteStore(str(tmp_path / "hub.db"), indexed_attributes=("postcode",))
    assert indexed.segment_page("postcode", "10112", limit=5).items == ["cus_2"]
    indexed.close()


def test_customers_reindex_refuses_a_page_size_out_of_range(capsys):
    with pytest.raises(SystemExit):
        main(["customers", "reindex", "--page-size", "0"])
    assert "--page-size" in capsys.readouterr().err
