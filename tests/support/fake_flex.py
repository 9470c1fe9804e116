"""A stand-in for the Twilio APIs a Flex destination calls: TaskRouter's task lookup, Flex's
Interactions (each one makes a Conversation, whose sid the test chooses), and the Conversations
participants and messages the callback side reads and writes. Form posts, JSON answers."""

from __future__ import annotations

import json
import threading
from urllib.parse import urlsplit

from tests.support.vendor_fake import JsonHandler, VendorFake


class FakeFlex(VendorFake):
    def __init__(self, conversation_sid: str) -> None:
        self.conversation_sid = conversation_sid
        #: The customer's participant: `None` for a chat identity, or a messaging binding.
        self.customer_binding: dict | None = None
        self.interactions: list[dict] = []
        self.messages: list[dict] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(JsonHandler):


            def do_GET(self):  # noqa: N802
                path = urlsplit(self.path).path
                if path.endswith("/Tasks"):
                    return self._send(200, {"tasks": [], "meta": {}})
                if path.endswith("/Participants"):
                    customer = {"sid": "MB" + "2" * 32, "identity": None if fake.customer_binding else "cus_x",
                                "messaging_binding": fake.customer_binding}
                    agent = {"sid": "MB" + "1" * 32, "identity": "alice_40example_2Ecom", "messaging_binding": None}
                    return self._send(200, {"participants": [customer, agent], "meta": {}})
                return self._send(404, {"code": 20404, "message": "not found"})

            def do_POST(self):  # noqa: N802
                path, form = urlsplit(self.path).path, self._form()
                with fake._lock:
                    if path == "/v1/Interactions":
                        fake.interactions.append(form)
                        attributes = {"conversationSid": fake.conversation_sid, "hub_delivery_id": "x"}
                        return self._send(201, {"sid": f"KD{len(fake.interactions):032d}", "routing": {"properties": {
                            "sid": f"WT{len(fake.interactions):032d}", "attributes": json.dumps(attributes)}}})
                    if path.endswith("/Messages"):
                        fake.messages.append({"path": path, **form})
                        return self._send(201, {"sid": f"IM{len(fake.messages):032d}"})
                return self._send(404, {"code": 20404, "message": "not found"})


        self._serve(Handler)
