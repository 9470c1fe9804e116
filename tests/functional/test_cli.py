"""`hubctl` through its real entry points: `run` as a process, `simulate` against a running hub,
`check-config` and `api-key`."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from chalicelib.cli import main
from chalicelib.hubconfig import parse_config
from chalicelib.local.runtime import EmbeddedRuntime
from chalicelib.settings import DEFAULT_CONFIG, PROJECT_ROOT, Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_run_serves_until_sigterm_and_then_exits_cleanly(tmp_path):
    port = free_port()
    env = {**os.environ, "HUB_DATA_DIR": str(tmp_path), "HUB_PORT": str(port), "PYTHONPATH": str(PROJECT_ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "chalicelib.cli", "run"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        health = None
        while time.monotonic() < deadline and health is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                    health = json.loads(response.read())
            except OSError:
                time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()

    assert health == {"status": "ok", "runtime": "embedded", "stage": "local"}
    assert process.returncode == 0
    assert f"running at http://127.0.0.1:{port}" in output
    assert f"Console: http://127.0.0.1:{port}/console/" in output
    assert f"Web chat demo: http://127.0.0.1:{port}/webchat/demo.html" in output
    assert (tmp_path / "hub.db").exists() and (tmp_path / "queue.db").exists()


def test_simulate_shows_one_customer_across_sms_whatsapp_and_web_chat(tmp_path, capsys):
    runtime = EmbeddedRuntime(Settings(config_path=str(DEFAULT_CONFIG), data_dir=str(tmp_path), port=0), port=0).start()
    try:
        code = main(["simulate", "--url", runtime.url, "--config", str(DEFAULT_CONFIG), "--phone", "+4917612345678"])
    finally:
        runtime.stop()
    output = capsys.readouterr().out

    assert code == 0
    assert "One customer: cus_" in output
    assert "with 3 contacts" in output
    for channel in ("sms", "whatsapp", "webchat"):
        assert f"  {channel}" in output
    assert output.count("outbox=delivered") == 3
    # The round trip: the agent's API reply and the rules' automatic one (the acknowledgement in
    # opening hours, the out-of-hours answer otherwise) reach the simulated widget.
    assert "POST /v1/messages → 202" in output
    assert "automatic" in output
    assert "agent     'Hallo Jana, Ihr Paket ist unterwegs" in output
    assert "queued → sent → delivered" in output
    lines = [json.loads(line) for line in (tmp_path / "outbox.jsonl").read_text().splitlines()]
    lines = [line for line in lines if line["type"] == "contact.created"]
    assert len({line["data"]["customer"]["id"] for line in lines}) == 1
    assert lines[-1]["data"]["case"]["contact_count"] == 3


def test_simulate_one_channel_posts_its_providers_signed_request(tmp_path, capsys):
    runtime = EmbeddedRuntime(Settings(config_path=str(DEFAULT_CONFIG), data_dir=str(tmp_path), port=0), port=0).start()
    try:
        sent = main(["simulate", "--url", runtime.url, "--config", str(DEFAULT_CONFIG), "--channel", "webchat",
                     "--text", "Nur eine Nachricht"])
        unknown = main(["simulate", "--url", runtime.url, "--config", str(DEFAULT_CONFIG), "--channel", "fax"])
    except SystemExit as exit_:
        unknown = exit_
    finally:
        runtime.stop()
    output = capsys.readouterr().out

    assert sent == 0 and "webchat    POST /webhooks/webchat" in output and "→ 202" in output
    assert "not enabled" in str(unknown)


def test_check_config_exit_codes(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("channels:\n  twilio:\n    auth_tokens: [x]\n")

    assert main(["check-config", str(DEFAULT_CONFIG)]) == 0
    assert "valid" in capsys.readouterr().out
    assert main(["check-config", str(broken)]) == 2
    assert "channels.twilio.public_url: Field required" in capsys.readouterr().err
    assert main(["check-config", str(DEFAULT_CONFIG), "--deployed"]) == 2
    assert "inline secret" in capsys.readouterr().err
    assert main(["check-config", str(DEFAULT_CONFIG.parent / "prod.yaml"), "--deployed"]) == 0


@pytest.mark.parametrize("scopes", ["", "    scopes: [customers:read]\n"], ids=["without scopes", "read only"])
def test_check_config_deployed_refuses_the_development_key(tmp_path, capsys, scopes):
    """local.yaml's key is public (it is in the repository): a deployed stage must not accept it."""
    import yaml

    shipped = yaml.safe_load((DEFAULT_CONFIG.parent / "local.yaml").read_text())["api_keys"][0]["sha256"]
    assert shipped == hashlib.sha256(b"local-dev-key").hexdigest()
    deployed = tmp_path / "prod.yaml"
    deployed.write_text((DEFAULT_CONFIG.parent / "prod.yaml").read_text().replace(
        "api_keys: []", f"api_keys:\n  - name: portal\n    sha256: {shipped}\n{scopes}"))

    assert main(["check-config", str(deployed)]) == 0  # the embedded hub may use it
    capsys.readouterr()
    assert main(["check-config", str(deployed), "--deployed"]) == 2
    error = capsys.readouterr().err
    assert "api_keys[0].sha256" in error and "local-dev-key" in error


@pytest.mark.parametrize(("scopes", "granted"), [
    (None, {"customers:read"}),
    ("customers:read,customers:erase", {"customers:read", "customers:erase"}),
    ("all", {"customers:read", "customers:write", "customers:erase", "operations", "messages:send", "events:write"}),
])
def test_api_key_prints_a_key_and_the_configuration_entry_that_accepts_it(capsys, scopes, granted):
    assert main(["api-key", "--name", "portal", *(["--scopes", scopes] if scopes else [])]) == 0
    output = capsys.readouterr().out
    key = output.split("store nowhere else): ")[1].split()[0]
    entry = output.split("configuration entry (api_keys):\n")[1]

    config = parse_config("api_keys:\n" + entry)
    assert config.api_keys[0].name == "portal"
    assert config.api_keys[0].sha256 == hashlib.sha256(key.encode()).hexdigest()
    assert config.api_keys[0].granted == granted
    assert key.startswith("hub_") and len(key) > 40


def test_api_key_refuses_an_unknown_scope(capsys):
    assert main(["api-key", "--name", "portal", "--scopes", "customers:read,everything"]) == 2
    assert "unknown scope 'everything'" in capsys.readouterr().err


def test_simulate_reaches_every_registered_channel_with_its_providers_own_signed_request(tmp_path, capsys):
    """`hubctl simulate --channel <key>` for every adapter: each request passes the adapter's own
    verification on the running hub and becomes a delivered contact of that channel."""
    from chalicelib.adapters.channels.registry import CHANNELS
    from tests.contract.test_channel_adapter_contract import case_for

    port = free_port()
    channels = {key: case_for(key).settings for key in CHANNELS}
    # Twilio signs the exact URL it calls: here, this hub's.
    channels["twilio"] = {**channels["twilio"], "public_url": f"http://127.0.0.1:{port}/webhooks/twilio"}
    # Only SendGrid holds the private key of a signature policy: simulated with URL credentials.
    channels["sendgrid"] = {k: v for k, v in channels["sendgrid"].items() if k != "signature_public_keys"}
    config = tmp_path / "hub.json"
    config.write_text(json.dumps({"channels": channels, "media": {"enabled": False},
                                  "destinations": [{"name": "outbox", "type": "outbox", "path": "outbox.jsonl", "case_events": False}]}))
    runtime = EmbeddedRuntime(Settings(config_path=str(config), data_dir=str(tmp_path), port=port), port=port).start()
    try:
        codes = {key: main(["simulate", "--url", runtime.url, "--config", str(config), "--channel", key,
                            "--text", f"Hallo über {key}"]) for key in sorted(CHANNELS)}
        outbox = tmp_path / "outbox.jsonl"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not outbox.exists() or len(outbox.read_text().splitlines()) < len(CHANNELS)):
            time.sleep(0.1)
    finally:
        runtime.stop()
    output = capsys.readouterr().out

    assert codes == {key: 0 for key in CHANNELS}, output
    contacts = [json.loads(line)["data"]["contact"] for line in outbox.read_text().splitlines()]
    assert sorted(c["provider"] for c in contacts) == sorted(CHANNELS)
    assert {c["provider"]: c["text"] for c in contacts} == {key: f"Hallo über {key}" for key in CHANNELS}


def test_hubctl_send_queues_a_reply_the_running_hub_sends(tmp_path, capsys, monkeypatch):
    runtime = EmbeddedRuntime(Settings(config_path=str(DEFAULT_CONFIG), data_dir=str(tmp_path), port=0), port=0).start()
    monkeypatch.setenv("HUB_CONFIG", str(DEFAULT_CONFIG))
    monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path))
    try:
        assert main(["simulate", "--url", runtime.url, "--config", str(DEFAULT_CONFIG), "--channel", "webchat",
                     "--text", "Hallo?"]) == 0
        hub = runtime.hub
        customer = _wait(lambda: hub.customers.find("phone:+4915123456789"))[0]
        # The inbound contact, not just any entry: out of hours an auto-reply is recorded before it.
        _wait(lambda: any(entry["direction"] == "inbound"
                          for entry in hub.customers.timeline(customer["id"], limit=5, cursor=None)[0]))
        customer = hub.customers.find("phone:+4915123456789")[0]
        case = customer["open_case"]["id"] if customer.get("open_case") else None
        capsys.readouterr()

        sent = main(["send", "--customer", customer["id"], "--text", "Antwort aus der Shell",
                     "--idempotency-key", "shell-1"])
        again = main(["send", "--customer", customer["id"], "--text", "Antwort aus der Shell",
                      "--idempotency-key", "shell-1"])
        refused = main(["send", "--customer", customer["id"], "--channel", "sms", "--text", "x"])
        invalid = main(["send", "--customer", customer["id"], "--channel", "fax", "--text", "x"])
        output = capsys.readouterr()
        message_id = output.out.split()[1].rstrip(":")
        contact = _wait(lambda: (c := hub.customers.contact(message_id))["status"] == "delivered" and c)
    finally:
        runtime.stop()

    assert (sent, again, refused, invalid) == (0, 0, 1, 2)
    assert "queued ct_" in output.out and "already queued" in output.out and "via webchat" in output.out
    assert "no_reachable_channel" in output.err and "channel:" in output.err
    assert contact["text"] == "Antwort aus der Shell" and contact["metadata"]["origin"] == "cli"
    assert case is None or contact["case_id"] == case


def _wait(predicate, timeout: float = 10.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")
