"""Routing cost: time per contact for 200 rules against an empty rule set, and what rules cost at
start-up before anything is routed.

- **Per contact**: `Router.route` over 60 varied contacts with 200 generated rules of every
  condition kind (channels, languages and intents, attributes, keyword lists, regular
  expressions, business hours, repeat contacts, all/any/not), against the same contacts with no
  rules (the floor: the default route alone). Targets: under 100 µs per contact for 200 rules.
- **Start-up**: a fresh interpreter reads the configuration as the webhook Lambda does at cold
  start (interleaved runs, medians), with the 200 rules in a rules file (`routing.source` type
  `file`), inline, and with no rules: the rules must cost nothing measurable until routing is used
  (≤ 1.05×). Compiling them on first use is reported too.
"""

from __future__ import annotations

import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench.common import ROOT, Result, interleaved, median, paired_ratio, ratio_result, us

RULES = 200
CONTACTS = 60
STARTUP_RUNS = 9
PER_CONTACT_TARGET_US = 100.0
STARTUP_LIMIT = 1.05

CONFIG = """
destinations: [{name: outbox, type: outbox}, {name: crm, type: outbox, path: crm.jsonl}]
routing:
  default: {queue: general, priority: normal}
  calendars:
    default: {timezone: Europe/Berlin, hours: {mon-fri: "08:00-18:00", sat: "09:00-13:00"}, holidays: ["12-25"]}
  templates:
    ack: {de: "Danke {name}!", en: "Thanks {name}!"}
"""

_WORDS = ("rechnung", "paket", "störung", "refund", "invoice", "vertrag", "kündigung", "delivery", "router",
          "passwort", "login", "tarif", "roaming", "sim", "esim", "rückruf", "termin", "techniker", "modem", "wlan")


def generate_rules(count: int, seed: int = 7) -> list[dict]:
    """Rules of every condition kind, most of them not matching a given contact, as in real sets."""
    rng = random.Random(seed)
    makers = [
        lambda i: {"channel": rng.choice(["whatsapp", "sms", "email", "webchat", "messenger"])},
        lambda i: {"all": [{"language": rng.choice(["de", "en", "fr", "tr"])},
                           {"intent": rng.choice(["outage", "billing", "refund", "cancellation"])}]},
        lambda i: {"attribute": {"name": "tier", "in": rng.sample(["gold", "vip", "silver", "bronze"], 2)}},
        lambda i: {"text": {"contains": rng.sample(_WORDS, 3)}},
        lambda i: {"text": {"matches": rf"(auftrag|order)\s*#?\d{{{rng.randint(5, 8)}}}"}},
        lambda i: {"business_hours": rng.choice(["open", "closed"])},
        lambda i: {"repeat_contact": {"count": rng.randint(3, 5), "within_hours": rng.choice([24, 48, 72])}},
        lambda i: {"any": [{"urgent": True}, {"attribute": {"name": "custom.score", "gte": rng.randint(50, 99)}}]},
        lambda i: {"not": {"account": f"+49301234{i:04d}"}},
        lambda i: {"all": [{"channel": "whatsapp"}, {"has_attachments": True}, {"new_customer": False}]},
    ]
    rules = []
    for index in range(count):
        then = rng.choice([
            {"tags": [f"t{index % 17}"]}, {"skills": {f"s{index % 7}": rng.randint(1, 5)}},
            {"queue": f"q{index % 11}"}, {"priority": rng.choice(["low", "normal", "high"])},
            {"add_destinations": ["crm"]}, {"escalate": 1},
        ])
        rules.append({"name": f"rule-{index:03d}", "when": makers[index % len(makers)](index), "then": then})
    return rules


def contexts(count: int, seed: int = 11):
    from tests.support.routing import routing_context

    rng = random.Random(seed)
    start = datetime(2026, 11, 23, 6, 0, tzinfo=timezone.utc)
    out = []
    for _ in range(count):
        now = start + timedelta(minutes=rng.randint(0, 7 * 24 * 60))
        words = rng.sample(_WORDS, 4) + ["bitte", "hilfe", "seit", "gestern", "order", f"#{rng.randint(10**5, 10**8)}"]
        rng.shuffle(words)
        out.append(routing_context(
            channel=rng.choice(["whatsapp", "sms", "email", "webchat"]), text=" ".join(words),
            language=rng.choice(["de", "en", None]), intents=frozenset(rng.sample(["outage", "billing", "refund"], 1)),
            urgent=rng.random() < 0.2, attributes={"tier": rng.choice(["gold", "silver"]), "custom.score": rng.randint(0, 99)},
            attachments=rng.choice([0, 0, 1]), now=now, recent=[now - timedelta(hours=h) for h in (0, 5, 30, 70)],
            case_opened_at=now - timedelta(hours=rng.randint(0, 60)),
        ))
    return out


def _factory(rules: list[dict]):
    import yaml

    from chalicelib.hubconfig import parse_config
    from chalicelib.routing.setup import RouterFactory

    return RouterFactory(parse_config(CONFIG + "  rules: " + json.dumps(rules) + "\n" if rules else CONFIG)), yaml


def _first_contact(rules: list[dict], context) -> float:
    """CPU seconds of a fresh rule set's first contact: it writes out and compiles the program of
    every rule (a plan is written out likewise once `_PLAN_AFTER` contacts asked for it)."""
    fresh, _ = _factory(rules)
    started = time.process_time()
    fresh.inline.route(context)
    return time.process_time() - started


def _startup_code(config_path: Path) -> str:
    return (
        "import time; t=time.perf_counter()\n"
        "from chalicelib.hubconfig import load_config\n"
        f"load_config({str(config_path)!r})\n"
        "print(time.perf_counter()-t)\n"
    )


def _startup(workdir: Path, rules: list[dict]) -> dict[str, list[float]]:
    """Fresh-process configuration load times: rules inline, rules in a rules file, no rules."""
    configs = {"inline": workdir / "inline.yaml", "file": workdir / "file.yaml", "none": workdir / "none.yaml"}
    configs["inline"].write_text(CONFIG + "  rules: " + json.dumps(rules) + "\n")
    (workdir / "rules.yaml").write_text(json.dumps(rules))
    configs["file"].write_text(CONFIG + "  source: {type: file, path: rules.yaml}\n")
    configs["none"].write_text(CONFIG)
    samples: dict[str, list[float]] = {name: [] for name in configs}
    for round_ in range(STARTUP_RUNS + 1):
        for name, path in configs.items():
            out = subprocess.run([sys.executable, "-c", _startup_code(path)], capture_output=True, text=True,
                                 cwd=ROOT, check=True).stdout
            if round_:  # the first round warms the .pyc and disk caches
                samples[name].append(float(out))
    return samples


def run() -> list[Result]:
    rules = generate_rules(RULES)
    _factory(rules)  # imports and first-time setup, not part of compiling
    re.purge()
    started = time.perf_counter()
    full, _ = _factory(rules)
    compile_seconds = time.perf_counter() - started
    empty, _ = _factory([])
    sample = contexts(CONTACTS)
    full.inline.route(sample[0])  # first-time costs of routing in this process (calendars, replies)
    first_contact_seconds = median([_first_contact(rules, sample[0]) for _ in range(3)])
    matched = statistics.mean(sum(t.matched for t in full.inline.route(c).trace) - 1 for c in sample)

    def route_all(router):
        def run_all():
            for context in sample:
                # Each contact is routed once in the pipeline: start without its per-contact caches.
                context.folded_words.clear()
                context.calendar_open.clear()
                router.route(context)

        return run_all

    timings = interleaved({"rules": route_all(full.inline), "empty": route_all(empty.inline)}, rounds=11)
    per_rules = median(timings["rules"]) / CONTACTS
    per_empty = median(timings["empty"]) / CONTACTS
    with tempfile.TemporaryDirectory(prefix="hub-bench-routing-") as tmp:
        startup = _startup(Path(tmp), rules)
    return [
        Result(f"routing per contact, {RULES} rules", round(us(per_rules), 1), round(us(per_empty), 1),
               per_rules / per_empty, f"< {PER_CONTACT_TARGET_US:g} µs", us(per_rules) < PER_CONTACT_TARGET_US, "µs",
               note=f"{CONTACTS} varied contacts, {matched:.1f} rules matching on average; floor: no rules (the "
                    f"default route and the decision object alone); every evaluated rule is in the trace; the "
                    f"first contact of a rule set {first_contact_seconds * 1e3:.1f} ms CPU (writes the rules out as "
                    f"one function), each of the {len(full.inline._plans)} channel/language plans once hot likewise"),
        ratio_result(f"configuration load, {RULES} rules in a rules file vs none (fresh process)",
                     median(startup["file"]) * 1e3, median(startup["none"]) * 1e3, STARTUP_LIMIT, "ms",
                     ratio=paired_ratio(startup["file"], startup["none"]),
                     note=f"routing.source type file: the rules are read and compiled on first use, in the worker "
                          f"only ({compile_seconds * 1e3:.0f} ms for {RULES} rules)"),
        Result(f"configuration load, {RULES} rules inline vs none (fresh process)",
               round(median(startup["inline"]) * 1e3, 1), round(median(startup["none"]) * 1e3, 1),
               paired_ratio(startup["inline"], startup["none"]), "info", None, "ms",
               note="inline rules are compiled on first use too, but every process parses them with the "
                    "configuration file (YAML): large rule sets belong in a rules file or on S3/SSM/AppConfig"),
    ]
