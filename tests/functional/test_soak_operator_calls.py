"""The soak's operator calls (`soak.HubProcess.api`) are requests the hub's API accepts: the
drain replays dead letters with an empty POST, which must not be refused for its media type."""

from __future__ import annotations

import urllib.error
from urllib.parse import urlsplit

import pytest

import soak
from tests.functional.conftest import API_KEY


def test_the_drains_dead_letter_calls_reach_the_route(running, monkeypatch, tmp_path):
    monkeypatch.setattr(soak, "API_KEY", API_KEY)
    hub = soak.HubProcess(tmp_path / "hub.json", tmp_path / "data", urlsplit(running.url).port)
    assert hub.api("GET", "/v1/dead-letters?limit=100").get("data") == []
    with pytest.raises(urllib.error.HTTPError) as refused:
        hub.api("POST", "/v1/dead-letters/dl_unknown/replay")
    assert refused.value.code == 404  # the route answered: not 415 for an empty form body
