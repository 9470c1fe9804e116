"""A local Amazon Connect for StartTaskContact (`PUT /contact/task`): each new ClientToken starts a
task with the next id, a repeated token answers the task it started (as Connect does). The hub's
boto3 client reaches it through `AWS_ENDPOINT_URL_CONNECT`."""

from __future__ import annotations

import json
import threading

from tests.support.vendor_fake import JsonHandler, VendorFake


class FakeConnect(VendorFake):
    def __init__(self) -> None:
        self.tasks: dict[str, dict] = {}
        self._by_token: dict[str, str] = {}
        self._lock = threading.Lock()
        fake = self

        class Handler(JsonHandler):
            def do_PUT(self):  # noqa: N802 - stdlib name
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))) or b"{}")
                if self.path != "/contact/task":
                    return self._answer(404, {"Message": f"no route {self.path}"})
                self._answer(200, {"ContactId": fake.start(body)})

            def _answer(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)


        self._serve(Handler)

    def start(self, request: dict) -> str:
        with self._lock:
            token = request.get("ClientToken") or f"untokened-{len(self.tasks)}"
            if token not in self._by_token:
                contact_id = f"7a5c0000-0000-4000-8000-{len(self.tasks) + 1:012d}"
                self._by_token[token] = contact_id
                self.tasks[contact_id] = request
            return self._by_token[token]
