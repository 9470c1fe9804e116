"""The web chat widget's routes through the Chalice app: the script's type, caching and size
budget, and the demo page (embedded only, signing identities as a site's backend would)."""

from __future__ import annotations

import gzip
import html
import json
import re
from pathlib import Path

import pytest
from chalice.test import Client

from chalicelib.adapters.channels.webchat import widget
from chalicelib.adapters.channels.webchat.adapter import user_hash
from chalicelib.bootstrap import Hub, use_hub
from chalicelib.settings import DEFAULT_CONFIG, Settings

#: The issue's budget for what a site's visitors download.
GZIPPED_BUDGET = 15 * 1024
LOCAL_IDENTITY_SECRET = "local-webchat-identity-secret"  # chalicelib/conf/local.yaml's demo-site


#: How a browser on this machine asks the embedded hub.
LOOPBACK = {"Host": "127.0.0.1:8000"}


@pytest.fixture(scope="module")
def client():
    from app import app

    with Client(app) as client:
        yield client


@pytest.fixture
def hub(tmp_path):
    def install(config: Path = DEFAULT_CONFIG, runtime: str = "embedded") -> Hub:
        hub = Hub(Settings(config_path=str(config), data_dir=str(tmp_path / "data"), runtime=runtime))
        use_hub(hub)
        return hub

    yield install
    use_hub(None)


def test_the_script_is_javascript_cacheable_and_the_committed_source(client):
    answer = client.http.get("/webchat/widget.js")

    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert answer.headers["Cache-Control"] == "public, max-age=300"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.body.decode("utf-8") == (widget.STATIC / "widget.js").read_text(encoding="utf-8")
    assert re.fullmatch(r'"[0-9a-f]{32}"', answer.headers["ETag"])


def test_a_cached_copy_is_revalidated_with_a_304_and_a_stale_one_gets_the_script(client):
    etag = client.http.get("/webchat/widget.js").headers["ETag"]

    same = client.http.get("/webchat/widget.js", headers={"If-None-Match": f'W/{etag}, "other"'})
    stale = client.http.get("/webchat/widget.js", headers={"If-None-Match": '"0000"'})

    assert (same.status_code, same.body) == (304, b"")
    assert same.headers["ETag"] == etag
    assert stale.status_code == 200 and stale.body


def test_the_script_stays_under_15_kb_gzipped():
    source = (widget.STATIC / "widget.js").read_bytes()
    size = len(gzip.compress(source, compresslevel=9))
    assert size < GZIPPED_BUDGET, f"widget.js is {size} bytes gzipped; the budget is {GZIPPED_BUDGET}"


def test_the_script_is_self_contained_and_renders_no_text_as_html():
    source = (widget.STATIC / "widget.js").read_text(encoding="utf-8")
    assert not re.search(r"\b(import|require)\s*\(|^\s*import\s", source, re.MULTILINE)
    # innerHTML only once, for the widget's own constant markup; messages use textContent.
    assert source.count("innerHTML") == 1
    assert "eval(" not in source and "new Function" not in source


def test_the_demo_page_is_not_served_on_aws(client, hub):
    hub(runtime="aws")

    answer = client.http.get("/webchat/demo.html")

    assert answer.status_code == 404
    assert json.loads(answer.body)["error"]["code"] == "not_found"
    assert "embedded hub only" in json.loads(answer.body)["error"]["message"]


def test_the_demo_page_embeds_the_widget_for_the_first_site(client, hub):
    hub()

    answer = client.http.get("/webchat/demo.html", headers={"Host": "127.0.0.1:8000"})

    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
    assert answer.headers["Cache-Control"] == "no-store"
    page = answer.body.decode()
    tag = '<script src="http://127.0.0.1:8000/webchat/widget.js" data-site-id="demo-site" async></script>'
    assert tag in page
    assert html.escape(tag) in page  # the snippet shown to copy
    assert "data-user-hash" not in page


def test_the_demo_page_signs_an_identity_as_the_sites_backend_would(client, hub):
    hub()

    page = client.http.get("/webchat/demo.html?external_id=cust-1&name=%3Cb%3EJane&lang=de", headers=LOOPBACK).body.decode()

    tag = re.search(r"<script src=[^>]*></script>", page).group(0)
    assert f'data-user-hash="{user_hash(LOCAL_IDENTITY_SECRET, "cust-1")}"' in tag
    assert 'data-external-id="cust-1"' in tag and 'data-lang="de"' in tag
    assert 'data-name="&lt;b&gt;Jane"' in tag and "<b>Jane" not in page


@pytest.mark.parametrize(
    ("query", "named"),
    [("colour=red", "unknown query parameter colour"), ("lang=fr", "lang must be de or en"),
     ("external_id=" + "x" * 129, "external_id is longer than 128")],
)
def test_bad_demo_parameters_are_400_naming_them(client, hub, query, named):
    hub()

    answer = client.http.get(f"/webchat/demo.html?{query}")

    assert answer.status_code == 400
    assert named in json.loads(answer.body)["error"]["message"]


@pytest.mark.parametrize(
    ("host", "listens_on"),
    [("evil.example:8000", "127.0.0.1"),  # DNS rebinding: a browser here, a name of the attacker's
     ("hub.example:8000", "0.0.0.0"),  # a hub others can reach
     ("127.0.0.1:8000", "0.0.0.0")],
)
def test_the_demo_signs_no_identity_unless_only_this_machine_can_ask(client, hub, tmp_path, host, listens_on):
    install = Hub(Settings(config_path=str(DEFAULT_CONFIG), data_dir=str(tmp_path / "data"), host=listens_on))
    use_hub(install)

    refused = client.http.get("/webchat/demo.html?external_id=cust-1", headers={"Host": host})
    anonymous = client.http.get("/webchat/demo.html", headers={"Host": host})

    assert refused.status_code == 403
    assert "only on a hub listening on loopback" in json.loads(refused.body)["error"]["message"]
    assert anonymous.status_code == 200 and "data-user-hash" not in anonymous.body.decode()


def test_a_site_without_identity_secrets_cannot_sign_on_the_demo_page(client, hub, tmp_path):
    config = tmp_path / "hub.yaml"
    config.write_text("channels:\n  webchat:\n    sites:\n      - id: anon\n")
    hub(config)

    assert client.http.get("/webchat/demo.html").status_code == 200
    refused = client.http.get("/webchat/demo.html?email=a@example.com", headers=LOOPBACK)
    assert refused.status_code == 400
    assert "site anon has no identity_secrets" in json.loads(refused.body)["error"]["message"]


def test_without_a_web_chat_site_the_demo_page_is_404(client, hub, tmp_path):
    config = tmp_path / "hub.yaml"
    config.write_text("channels: {}\n")
    hub(config)

    answer = client.http.get("/webchat/demo.html")

    assert answer.status_code == 404
    assert "no web chat site is configured" in json.loads(answer.body)["error"]["message"]
