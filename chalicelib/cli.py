"""`hubctl`: run the embedded hub, check a configuration, make API keys, send messages, simulate customers.

Usage: `python -m chalicelib.cli <command>` (or `bin/hubctl <command>`); `--help` on each command.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import signal
import sys

from chalicelib.errors import ConfigError, HubError


def _run(args: argparse.Namespace) -> int:
    from chalicelib.adapters.channels.registry import PAGES
    from chalicelib.local.memory import limit_malloc_arenas
    from chalicelib.local.runtime import EmbeddedRuntime
    from chalicelib.settings import Settings

    settings = Settings.from_environ()
    limit_malloc_arenas(settings.environ)  # before the first thread: see chalicelib/local/memory.py
    runtime = EmbeddedRuntime(settings, port=args.port)
    # Before serving: a stop request that arrives as soon as the hub answers is honoured.
    signal.signal(signal.SIGINT, lambda *_: runtime.request_stop())
    signal.signal(signal.SIGTERM, lambda *_: runtime.request_stop())
    runtime.start()
    print(f"Omnichannel hub running at {runtime.url}  (data: {settings.data_dir}; Ctrl-C stops)", flush=True)
    print(f"Console: {runtime.url}/console/", flush=True)
    for path, page in PAGES.items():
        if page.announce and page.provider in runtime.hub.config.channels:
            print(f"{page.announce}: {runtime.url}{path}", flush=True)
    runtime.wait()
    print("stopping: finishing in-flight work…", flush=True)
    runtime.stop()
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from chalicelib.hubconfig import load_config
    from chalicelib.routing.setup import RouterFactory

    config = load_config(args.path, allow_inline_secrets=not args.deployed)
    # Every section is validated at load; the rules compile where contacts are routed. Here, at once.
    factory = RouterFactory(config)
    source = config.routing.source
    rules = f"{len(factory.inline.rules.rules)} inline"
    if source.type == "file":
        from pathlib import Path

        from chalicelib.routing.setup import check_rules_file
        from chalicelib.routing.sources import rules_source

        checked = check_rules_file(factory, rules_source(source, lambda service: None, base_dir=Path(args.path).parent))
        rules = f"{len(checked.rules.rules)} in {source.path}"
    elif source.type != "inline":
        rules += f"; in force: the {source.type} source's (checked when fetched)"
    from pathlib import Path

    from chalicelib.routing.event_setup import check_event_config

    event_rules = check_event_config(config, base_dir=Path(args.path).parent)
    print(
        f"{args.path}: valid — channels: {', '.join(config.channels) or 'none'}; "
        f"destinations: {', '.join(d.name for d in config.destinations) or 'none'}; "
        f"routing rules: {rules}; event rules: {event_rules}; api keys: {len(config.api_keys)}"
    )
    return 0


def _route(args: argparse.Namespace) -> int:
    """`hubctl route --explain contact.json`: the rules' decision for a contact, without side effects."""
    from chalicelib.bootstrap import Hub
    from chalicelib.domain.values import replace
    from chalicelib.service.explain import explain, render_trace
    from chalicelib.settings import Settings

    text = sys.stdin.read() if args.explain == "-" else _read(args.explain)
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        print(f"{args.explain}: not valid JSON: {exc}", file=sys.stderr)
        return 2
    settings = Settings.from_environ()
    if args.config:
        settings = replace(settings, config_path=args.config)
    hub = Hub(settings)
    if not isinstance(body, dict) or "contact" not in body:
        body = {"contact": body}  # a bare contact document
    result = explain(body, router=hub.router_factory.inline if args.inline else hub.live_router.current(),
                     enricher=hub.enricher, now=hub.clock())
    print(json.dumps(result, indent=2, ensure_ascii=False) if args.json else render_trace(result["decision"]))
    return 0


def _dead_letters(args: argparse.Namespace) -> int:
    """`hubctl dead-letters list|replay`: on the store and queues HUB_RUNTIME points at (the local
    data directory, or the stage's DynamoDB table and SQS queues with AWS credentials)."""
    from chalicelib.bootstrap import Hub
    from chalicelib.settings import Settings

    hub = Hub(Settings.from_environ())
    try:
        if args.action == "list":
            letters, cursor = hub.operations.dead_letters(destination=args.destination, kind=args.kind, limit=args.limit)
            while cursor and args.kind and len(letters) < args.limit:  # a kind's pages may hold fewer than asked
                page, cursor = hub.operations.dead_letters(destination=args.destination, kind=args.kind,
                                                           limit=args.limit - len(letters), cursor=cursor)
                letters += page
            for entry in letters:
                print(f"{entry['id']}  {entry['destination']}  {entry['kind']}  attempts {entry['attempts']}  "
                      f"dead {entry['dead_at']}  {entry['reason']}")
            print(f"{len(letters)} dead letters" + (" (more: raise --limit)" if cursor else ""))
            return 0
        if args.id:
            hub.operations.replay(args.id)
            count = 1
        elif args.destination:
            count = hub.operations.replay_destination(args.destination, limit=args.limit)
        else:
            print("hubctl: dead-letters replay needs --destination or --id", file=sys.stderr)
            return 2
        print(f"queued {count} dead letters again" + (f" for {args.destination}" if args.destination else ""))
        return 0
    finally:
        hub.close()


def _send(args: argparse.Namespace) -> int:
    """`hubctl send`: one message to a customer, through the same checks as `POST /v1/messages`,
    queued on the store and queues HUB_RUNTIME points at (the running `make run` hub sends it)."""
    from pydantic import ValidationError

    from chalicelib.bootstrap import Hub
    from chalicelib.service.send_request import SendRequest
    from chalicelib.settings import Settings

    to = {"case_id": args.case} if args.case else {"customer_id": args.customer} if args.customer \
        else {"identifier": args.identifier}
    body = {"to": to, "channel": args.channel, "text": args.text, "subject": args.subject,
            "provider": args.provider, "account": args.account, "idempotency_key": args.idempotency_key,
            "purpose": args.purpose}
    if args.template:
        body["template"] = {"name": args.template, "language": args.language, "parameters": args.parameter or []}
    try:
        request = SendRequest.model_validate({k: v for k, v in body.items() if v is not None})
    except ValidationError as exc:
        for error in exc.errors(include_input=False, include_url=False):
            print(f"hubctl: {'.'.join(str(p) for p in error['loc']) or 'message'}: {error['msg']}", file=sys.stderr)
        return 2
    hub = Hub(Settings.from_environ())
    try:
        accepted = hub.messages.send(request, origin="cli", idempotency_scope="cli")
    except HubError as exc:
        print(f"hubctl: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    finally:
        hub.close()
    view = accepted.view()
    print(f"{'already queued' if accepted.repeated else 'queued'} {view['id']}: {view['channel']} via "
          f"{view['provider']} from {view['account']} to {view['to']} (case {view['case_id']})")
    return 0


def _event(args: argparse.Namespace) -> int:
    """`hubctl event`: business events onto the events queue HUB_RUNTIME points at, through the
    same checks as `POST /v1/events` (the running hub's event workers process them); with
    `--explain`, which event rules would match and what they would do, with nothing written or
    sent; `hubctl event setup-eventbridge` prints how to deliver a bus's events to the hub."""
    if args.action == "setup-eventbridge":
        return _setup_eventbridge(args)
    from chalicelib.bootstrap import Hub
    from chalicelib.domain.values import replace
    from chalicelib.settings import Settings

    try:
        body = _event_body(args)
    except ValueError as exc:
        print(f"hubctl: {exc}", file=sys.stderr)
        return 2
    settings = Settings.from_environ()
    if args.config:
        settings = replace(settings, config_path=args.config)
    hub = Hub(settings)
    try:
        if args.explain:
            if isinstance(body, list):
                if len(body) != 1:
                    print("hubctl: --explain takes one event", file=sys.stderr)
                    return 2
                body = body[0]
            result = hub.event_processor.explain({"event": body})
            print(json.dumps(result, indent=2, ensure_ascii=False, default=str) if args.json
                  else _render_event_explain(result))
            return 0
        accepted = hub.event_intake.accept(hub.event_intake.parse(body), source="cli")
    except HubError as exc:
        print(f"hubctl: {exc.code}: {exc.message}", file=sys.stderr)
        for field, reason in (exc.detail.get("fields") or {}).items():
            print(f"  {field}: {reason}", file=sys.stderr)
        return 1
    finally:
        hub.close()
    if args.json:
        print(json.dumps({"data": [item.view() for item in accepted]}, indent=2))
    else:
        for item in accepted:
            print(f"{item.status} {item.id}")
    return 0


def _event_body(args: argparse.Namespace) -> dict | list:
    """The event(s) the options describe: `--file` (an event or an array), or one built from
    `--type --id --identifier|--customer --data|--data-file --occurred-at`. Raises ValueError."""
    from datetime import datetime, timezone

    if args.file:
        if any(getattr(args, name) for name in ("type", "id", "identifier", "customer", "data", "data_file")):
            raise ValueError("--file takes the events from the file: leave out --type, --id, --data and the customer")
        text = sys.stdin.read() if args.file == "-" else _read(args.file)
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{args.file} is not JSON: {exc}") from None
    if not args.type or not args.id:
        raise ValueError("give --type and --id (or --file)")
    if args.data and args.data_file:
        raise ValueError("give --data or --data-file, not both")
    data_text = args.data if args.data is not None else _read(args.data_file) if args.data_file else "{}"
    try:
        data = json.loads(data_text)
    except ValueError as exc:
        raise ValueError(f"the event data is not JSON: {exc}") from None
    customer = {"identifier": args.identifier} if args.identifier else {"customer_id": args.customer} \
        if args.customer else None
    occurred_at = args.occurred_at or datetime.now(timezone.utc).isoformat()
    return {"type": args.type, "id": args.id, "occurred_at": occurred_at, "customer": customer, "data": data}


def _render_event_explain(result: dict) -> str:
    """An event explanation as text: the rules in order (as `hubctl route --explain` prints
    them), then what the matching rules would do."""
    lines = []
    for entry in result.get("trace", []):
        mark = "MATCH" if entry.get("matched") else "  -  "
        lines.append(f"  {mark} {entry.get('rule')}: {entry.get('reason') or ''}")
    rest = {key: value for key, value in result.items() if key != "trace"}
    if rest:
        lines.append(json.dumps(rest, indent=2, ensure_ascii=False, default=str))
    return "\n".join(lines)


#: What `setup-eventbridge` forwards without a pattern: every event on the bus except AWS's own.
DEFAULT_EVENT_PATTERN = {"source": [{"anything-but": {"prefix": "aws."}}]}


def _setup_eventbridge(args: argparse.Namespace) -> int:
    """Print the `aws cloudformation deploy` command of `infra/eventbridge-events.yaml`: a rule on
    the named bus delivering matching events to the `eventbridge_events` function. The bus and
    pattern come from the options, else from `events.eventbridge` in the configuration."""
    from chalicelib.settings import Settings

    settings = Settings.from_environ()
    stage = args.stage or settings.stage
    configured = None
    if not (args.bus and args.pattern):
        from chalicelib.hubconfig import load_config

        configured = load_config(args.config or settings.config_path).events.eventbridge
    bus = args.bus or (configured.bus if configured else "default")
    try:
        pattern = json.loads(args.pattern) if args.pattern else configured.pattern if configured \
            else DEFAULT_EVENT_PATTERN
    except ValueError as exc:
        print(f"hubctl: --pattern is not JSON: {exc}", file=sys.stderr)
        return 2
    if not isinstance(pattern, dict) or not pattern:
        print("hubctl: --pattern must be a non-empty JSON object (an EventBridge event pattern)", file=sys.stderr)
        return 2
    compact = json.dumps(pattern, separators=(",", ":"))
    print(f"Business events from EventBridge bus {bus!r} to the hub (stage {stage}):")
    print("  deploy the functions first (chalice deploy), then, in the bus's region:\n")
    print(f"aws cloudformation deploy --template-file infra/eventbridge-events.yaml "
          f"--stack-name hub-{stage}-eventbridge-events \\\n"
          f"  --parameter-overrides Stage={stage} EventBusName={bus} "
          f"EventPattern='{compact}'")
    print("\nEach event's detail may carry type, id, occurred_at, customer and data; the envelope's "
          "detail-type, id and time fill in what it leaves out (docs/deploy.md).")
    return 0


def _openapi(args: argparse.Namespace) -> int:
    """`hubctl openapi`: print the OpenAPI document (`bin/hubctl openapi > docs/openapi.json`)."""
    from app import app
    from chalicelib.api.openapi.document import build_document, render

    sys.stdout.write(render(build_document(app.routes)))
    return 0


def _unhandled(args: argparse.Namespace) -> int:
    """`hubctl unhandled`: webhook items no adapter could read, kept raw, of one day (UTC)."""
    from datetime import date

    from chalicelib.bootstrap import Hub
    from chalicelib.settings import Settings

    hub = Hub(Settings.from_environ())
    try:
        day = date.fromisoformat(args.day) if args.day else hub.operations.today()
        events, more = hub.operations.unhandled(day=day, provider=args.provider, limit=args.limit)
        for event in events:
            raw = json.dumps(event["raw"], ensure_ascii=False)
            print(f"{event['id']}  {event['provider']}  {event['reason']}\n    {raw[:300]}{' …' if len(raw) > 300 else ''}")
        print(f"{len(events)} unhandled items on {day}" + (" (more: raise --limit)" if more else ""))
        return 0
    finally:
        hub.close()


def _customers(args: argparse.Namespace) -> int:
    """`hubctl customers reindex`: bring every customer's segment index entries in line with
    `customers.indexed_attributes`, after that list changed. On AWS it Scans the whole table
    (read capacity for every item, with the operator's credentials: the hub's roles may not Scan),
    one page at a time; the customers themselves are not changed."""
    from chalicelib.bootstrap import Hub
    from chalicelib.settings import Settings

    hub = Hub(Settings.from_environ())
    try:
        store = hub.store
        scanned = changed = pages = 0
        cursor: str | None = None
        while True:
            page = store.reindex_customers(limit=args.page_size, cursor=cursor)
            scanned, changed, pages = scanned + page.scanned, changed + page.changed, pages + 1
            if pages % 100 == 0:
                print(f"… {scanned} customers read, {changed} reindexed", file=sys.stderr)
            if page.cursor is None:
                break
            cursor = page.cursor
        indexed = ", ".join(store.indexed_attributes) or "none"
        print(f"{scanned} customers read, {changed} reindexed (indexed attributes: {indexed})")
        return 0
    finally:
        hub.close()


def _iso_day(text: str) -> str:
    from datetime import date

    try:
        date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date as YYYY-MM-DD") from None
    return text


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _api_key(args: argparse.Namespace) -> int:
    from chalicelib.hubconfig import SCOPES

    scopes = list(SCOPES) if args.scopes.strip() == "all" else [s.strip() for s in args.scopes.split(",") if s.strip()]
    unknown = [scope for scope in scopes if scope not in SCOPES]
    if unknown or not scopes:
        print(f"hubctl: unknown scope {unknown[0]!r}; known: {', '.join(SCOPES)}, or all" if unknown
              else "hubctl: --scopes needs at least one scope", file=sys.stderr)
        return 2
    key = args.key or "hub_" + secrets.token_urlsafe(32)
    digest = hashlib.sha256(key.encode()).hexdigest()
    print(f"key (give to the consumer, store nowhere else): {key}")
    print("configuration entry (api_keys):")
    print(f"  - name: {args.name}\n    sha256: {digest}\n    scopes: [{', '.join(scopes)}]")
    return 0


def _callbacks(args: argparse.Namespace) -> int:
    """`hubctl callbacks setup <destination> [--create]`: what to configure in the destination's
    vendor so that agents' replies and ticket changes come back to the hub; with `--create`, the
    hub creates it through the vendor's API where the API allows."""
    from chalicelib.bootstrap import Hub
    from chalicelib.domain.values import replace
    from chalicelib.settings import Settings

    settings = Settings.from_environ()
    if args.config:
        settings = replace(settings, config_path=args.config)
    hub = Hub(settings)
    try:
        destination = hub.config.destination(args.destination)
        if destination is None:
            raise ConfigError(f"no destination named {args.destination!r} in the configuration")
        side = hub.callback_side(args.destination)
        if side is None:
            connector = hub.connector(args.destination)
            if connector is None or connector.callbacks is None:
                raise ConfigError(f"destination {args.destination!r} ({destination.type}) has no way back to the hub; "
                                  "its consumers answer through POST /v1/messages")
            raise ConfigError(f"destination {args.destination!r} has no callbacks section: add "
                              f"destinations[{args.destination}].callbacks (secrets, hub_author_ids) first")
        setup = side.setup()
        print(f"{setup.vendor}: send callbacks to {side.callback_url()}")
        if not side.settings.public_url:
            print("  (set destinations[].callbacks.public_url to the API's URL to print it here)")
        for number, step in enumerate(setup.steps, 1):
            print(f"\n{number}. {step.title}")
            if step.text:
                print(f"   {step.text}")
            for name, value in step.values.items():
                lines = value.splitlines() or [""]
                print(f"   {name}: {lines[0]}")
                for line in lines[1:]:
                    print(f"     {line}")
        for limit in setup.limits:
            print(f"\nNote: {limit}")
        if args.create:
            if not setup.can_create:
                raise ConfigError(f"{setup.vendor} cannot be configured through its API; follow the steps above")
            print("\nCreating it through the API:")
            for line in side.create_setup():
                print(f"  created {line}")
        elif setup.can_create:
            print(f"\nhubctl callbacks setup {args.destination} --create makes it through the {setup.vendor} API.")
        return 0
    finally:
        hub.close()


def _simulate(args: argparse.Namespace) -> int:
    from chalicelib.simulate import run_journey, send_one

    if args.channel:
        return send_one(base_url=args.url, config_path=args.config, channel=args.channel, phone=args.phone,
                        email=args.email, text=args.text)

    return run_journey(base_url=args.url, config_path=args.config, api_key=args.api_key, phone=args.phone)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hubctl", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="start the hub locally (API + workers, SQLite)")
    run.add_argument("--port", type=int, default=None, help="port (default HUB_PORT or 8000)")
    run.set_defaults(func=_run)

    check = commands.add_parser("check-config", help="validate a hub configuration file")
    check.add_argument("path")
    check.add_argument("--deployed", action="store_true", help="also reject inline secrets (AWS stages)")
    check.set_defaults(func=_check_config)

    key = commands.add_parser("api-key", help="make a consumer API key and its configuration entry")
    key.add_argument("--name", required=True)
    key.add_argument("--key", help="hash this key instead of generating one")
    key.add_argument("--scopes", default="customers:read",
                     help="comma-separated: customers:read, customers:write, customers:erase, operations, "
                          "messages:send, events:write, or all (default customers:read)")
    key.set_defaults(func=_api_key)

    route = commands.add_parser("route", help="explain the routing decision for a contact (no side effects)")
    route.add_argument("--explain", required=True, metavar="FILE",
                       help='contact JSON: a stored contact, {"contact": ..., "customer": ..., "case": ...}, or - for stdin')
    route.add_argument("--config", default=None, help="hub configuration (default HUB_CONFIG)")
    route.add_argument("--inline", action="store_true", help="use the configuration file's rules, not the rules source")
    route.add_argument("--json", action="store_true", help="print the decision and enrichment as JSON")
    route.set_defaults(func=_route)

    dead = commands.add_parser("dead-letters", help="list or replay deliveries the hub gave up on")
    dead.add_argument("action", choices=["list", "replay"])
    dead.add_argument("--destination", help="only this destination's dead letters")
    dead.add_argument("--id", help="replay this one dead letter (its delivery id)")
    dead.add_argument("--kind", choices=["contact", "customer_event", "message"],
                      help="list only letters of this kind (a delivery of a contact or a customer event, or a message)")
    dead.add_argument("--limit", type=int, default=1000, help="at most this many (default 1000)")
    dead.set_defaults(func=_dead_letters)

    send = commands.add_parser("send", help="send a customer a message (like POST /v1/messages)")
    addressee = send.add_mutually_exclusive_group(required=True)
    addressee.add_argument("--case", help="answer on this case's conversation")
    addressee.add_argument("--customer", help="send to this customer")
    addressee.add_argument("--identifier", help="send to the customer holding this identifier (phone:+49…)")
    send.add_argument("--text", help="the message text")
    send.add_argument("--channel", default="reply",
                      help="reply (default), preferred, or sms, whatsapp, email, webchat, messenger, instagram, "
                           "telegram, slack, x")
    send.add_argument("--provider", help="with an explicit channel: the provider to send through")
    send.add_argument("--account", help="with an explicit channel: the number, page, mailbox or bot to send from")
    send.add_argument("--subject", help="email subject (default: Re: the answered mail's)")
    send.add_argument("--template", help="a configured template's name (outside the WhatsApp window)")
    send.add_argument("--language", default="de", help="the template's language (default de)")
    send.add_argument("--parameter", action="append", help="a template parameter, in order (repeat)")
    send.add_argument("--purpose", default="service", choices=["service", "marketing"])
    send.add_argument("--idempotency-key", help="the same key sends once (within 24 h)")
    send.set_defaults(func=_send)

    customers = commands.add_parser("customers", help="maintain customer records (reindex the segment index)")
    customers.add_argument("action", choices=["reindex"])
    customers.add_argument("--page-size", type=int, default=100, choices=range(1, 1001), metavar="1-1000",
                           help="items read per store call (default 100)")
    customers.set_defaults(func=_customers)

    event = commands.add_parser("event", help="send a business event (like POST /v1/events), or explain it")
    event.add_argument("action", nargs="?", default="send", choices=["send", "setup-eventbridge"],
                       help="send (default), or setup-eventbridge: print the deploy command of the bus rule")
    event.add_argument("--type", help="the event type (outage.started, parcel.late, ...)")
    event.add_argument("--id", help="the event id: the idempotency key (namespace it: billing:inv-123:failed)")
    whom = event.add_mutually_exclusive_group()
    whom.add_argument("--identifier", help="the customer holding this identifier (phone:+49…)")
    whom.add_argument("--customer", help="the customer with this id (neither: a broadcast event)")
    event.add_argument("--data", help="the event data as a JSON object")
    event.add_argument("--data-file", help="a file with the event data as a JSON object")
    event.add_argument("--occurred-at", help="when it happened, ISO 8601 with a timezone (default now)")
    event.add_argument("--file", help="a JSON file of an event or an array of events (- for stdin)")
    event.add_argument("--explain", action="store_true", help="show which rules match and what they would do; "
                                                              "nothing is written or sent")
    event.add_argument("--json", action="store_true", help="print the raw result as JSON")
    event.add_argument("--config", default=None, help="hub configuration (default HUB_CONFIG)")
    event.add_argument("--bus", help="setup-eventbridge: the event bus's name (default: events.eventbridge.bus, "
                                     "else default)")
    event.add_argument("--pattern", help="setup-eventbridge: the EventBridge event pattern as JSON (default: "
                                         "events.eventbridge.pattern, else every event whose source does not "
                                         "start with aws.)")
    event.add_argument("--stage", help="setup-eventbridge: the deployed stage (default HUB_STAGE)")
    event.set_defaults(func=_event)

    unhandled = commands.add_parser("unhandled", help="list webhook items no adapter could read (kept raw)")
    unhandled.add_argument("--day", type=_iso_day, help="the UTC day, YYYY-MM-DD (default today)")
    unhandled.add_argument("--provider", help="only this provider's items (e.g. meta)")
    unhandled.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    unhandled.set_defaults(func=_unhandled)

    openapi = commands.add_parser("openapi", help="print the API's OpenAPI 3.1 document (> docs/openapi.json)")
    openapi.set_defaults(func=_openapi)

    callbacks = commands.add_parser("callbacks", help="set up a destination's way back (agent replies, ticket status)")
    callbacks.add_argument("action", choices=["setup"])
    callbacks.add_argument("destination", help="the destination's name in the configuration")
    callbacks.add_argument("--create", action="store_true", help="create it through the vendor's API where it allows")
    callbacks.add_argument("--config", default=None, help="hub configuration (default HUB_CONFIG)")
    callbacks.set_defaults(func=_callbacks)

    simulate = commands.add_parser("simulate", help="send one customer's signed SMS, WhatsApp and web chat messages")
    simulate.add_argument("--url", default="http://127.0.0.1:8000", help="the running hub")
    simulate.add_argument("--config", default=None, help="hub configuration with the channel secrets")
    simulate.add_argument("--api-key", default="local-dev-key", help="consumer API key to show the result")
    simulate.add_argument("--phone", default="+4915123456789", help="the simulated customer's number")
    simulate.add_argument("--channel", help="send one message through this provider's endpoint only (e.g. slack)")
    simulate.add_argument("--email", default="jana.schmidt@example.com", help="the simulated customer's email")
    simulate.add_argument("--text", default="Hallo, mein Internet geht seit heute Morgen nicht.",
                          help="the message text (with --channel)")
    simulate.set_defaults(func=_simulate)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"hubctl: {exc.message}", file=sys.stderr)
        return 2
    except HubError as exc:  # a dead letter that does not exist, a store that cannot be reached
        print(f"hubctl: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
