"""A stateful stand-in for Jira Service Management's request API, enough for the two-way tests:
requests raised (`SD-1`, `SD-2`, … in order), found by the case id in their summary, and their
comments (public and internal) added and listed; the service desk (its project key) and Jira's
admin webhooks (`/rest/webhooks/1.0/webhook`, listed and registered). Every request it gets is
kept in `calls`."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.vendor_fake import JsonHandler, VendorFake

REQUESTS = "/rest/servicedeskapi/request"
WEBHOOKS = "/rest/webhooks/1.0/webhook"
_COMMENTS = re.compile(rf"{REQUESTS}/([^/]+)/comment")


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    body: dict | None


class FakeJsm(VendorFake):
    def __init__(self, project: str = "SD") -> None:
        self.project = project
        #: issueKey → {"summary", "description", "comments": [{"id", "body", "public"}]}
        self.requests: dict[str, dict] = {}
        self.calls: list[Call] = []
        #: Admin webhooks as registered (the request body, plus `self`).
        self.webhooks: list[dict] = []
        self._comment_ids = iter(range(10500, 10_000_000))
        self._lock = threading.Lock()
        fake = self

        class Handler(JsonHandler):
            def _answer(self, status: int, payload: object) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _call(self) -> Call:
                url = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("content-length", "0")))
                call = Call(self.command, url.path, parse_qs(url.query), json.loads(raw) if raw else None)
                with fake._lock:
                    fake.calls.append(call)
                return call

            def do_GET(self):  # noqa: N802
                call = self._call()
                with fake._lock:
                    if call.path == WEBHOOKS:
                        return self._answer(200, [{k: v for k, v in w.items() if k != "secret"} for w in fake.webhooks])
                    if call.path.startswith("/rest/servicedeskapi/servicedesk/"):
                        desk = call.path.rsplit("/", 1)[1]
                        return self._answer(200, {"id": desk, "projectId": "10000", "projectKey": fake.project,
                                                  "projectName": "Support Desk"})
                    if call.path == REQUESTS:
                        term = call.query.get("searchTerm", [""])[0]
                        found = [fake._listed(key) for key, r in fake.requests.items() if term in r["summary"]]
                        return self._answer(200, {"size": len(found), "start": 0, "limit": 50, "isLastPage": True,
                                                  "values": found})
                    match = _COMMENTS.fullmatch(call.path)
                    request = fake.requests.get(unquote(match[1])) if match else None
                    if request is None:
                        return self._answer(404, {"errorMessage": "Request does not exist"})
                    public = [c for c in request["comments"] if c["public"]]
                    return self._answer(200, {"size": len(public), "start": 0, "limit": 100, "isLastPage": True,
                                              "values": public})

            def do_POST(self):  # noqa: N802
                call = self._call()
                with fake._lock:
                    if call.path == WEBHOOKS:
                        webhook = {**call.body, "self": f"{fake.url}{WEBHOOKS}/{len(fake.webhooks) + 1}"}
                        fake.webhooks.append(webhook)
                        return self._answer(201, {k: v for k, v in webhook.items() if k != "secret"})
                    if call.path == REQUESTS:
                        key = f"{fake.project}-{len(fake.requests) + 1}"
                        values = call.body.get("requestFieldValues", {})
                        fake.requests[key] = {"summary": values.get("summary", ""),
                                              "description": values.get("description", ""), "comments": []}
                        return self._answer(201, {"issueId": str(10000 + len(fake.requests)), "issueKey": key})
                    match = _COMMENTS.fullmatch(call.path)
                    request = fake.requests.get(unquote(match[1])) if match else None
                    if request is None:
                        return self._answer(404, {"errorMessage": "Request does not exist"})
                    comment = {"id": str(next(fake._comment_ids)), "body": call.body["body"],
                               "public": call.body["public"]}
                    request["comments"].append(comment)
                    return self._answer(201, comment)


        self._serve(Handler)

    def _listed(self, key: str) -> dict:
        request = self.requests[key]
        return {"issueKey": key, "requestFieldValues": [{"fieldId": "summary", "value": request["summary"]},
                                                        {"fieldId": "description", "value": request["description"]}]}

    def comments(self, key: str, *, public: bool | None = None) -> list[dict]:
        with self._lock:
            found = list(self.requests.get(key, {}).get("comments", []))
        return [c for c in found if public is None or c["public"] is public]
