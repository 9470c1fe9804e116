"""A stateful stand-in for the Salesforce REST API as the Salesforce connector and its callback
side use it: the Contact upsert, Case and CaseComment creates, the SOQL lookup of a Case's
comments, and reading one CaseComment back. Comments remember who wrote them (the integration
user for the hub's calls, an agent for `agent_comment`), so a test can play the Flow's callback
with what Salesforce would hold."""

from __future__ import annotations

import re
import threading
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

from tests.support.vendor_fake import JsonHandler, VendorFake

API = "/services/data/v60.0"
CASE_ID = "5005g00000Ab1CdAAJ"
CONTACT_ID = "0035g00000Zz1AbAAJ"
#: The integration user the hub's token stands for (`hub_author_ids`).
HUB_USER = "0055g00000Hub01AAB"


class FakeSalesforce(VendorFake):
    def __init__(self) -> None:
        self.cases: dict[str, dict] = {}
        self.comments: dict[str, dict] = {}
        self._lock = threading.Lock()
        fake = self

        class Handler(JsonHandler):
            content_type = "application/json;charset=UTF-8"


            def _missing(self) -> None:
                self._send(404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}])

            def do_PATCH(self):  # noqa: N802
                self._body()
                if self.path.startswith(f"{API}/sobjects/Contact/"):
                    return self._send(201, {"id": CONTACT_ID, "success": True, "errors": [], "created": True})
                return self._missing()

            def do_POST(self):  # noqa: N802
                body = self._body()
                with fake._lock:
                    if self.path == f"{API}/sobjects/Case/":
                        fake.cases[CASE_ID] = {**body, "Id": CASE_ID}
                        return self._send(201, {"id": CASE_ID, "success": True, "errors": []})
                    if self.path == f"{API}/sobjects/CaseComment/":
                        comment = fake._comment(body, HUB_USER)
                        return self._send(201, {"id": comment["Id"], "success": True, "errors": []})
                return self._missing()

            def do_GET(self):  # noqa: N802
                url = urlsplit(self.path)
                with fake._lock:
                    if url.path == f"{API}/query":
                        soql = parse_qs(url.query).get("q", [""])[0]
                        parent = re.search(r"ParentId = '([A-Za-z0-9]+)'", soql)
                        found = [{"attributes": {"type": "CaseComment"}, "Id": c["Id"], "CommentBody": c["CommentBody"]}
                                 for c in fake.comments.values() if parent and c["ParentId"] == parent.group(1)]
                        return self._send(200, {"totalSize": len(found), "done": True, "records": found})
                    match = re.fullmatch(rf"{API}/sobjects/CaseComment/([A-Za-z0-9]+)", url.path)
                    if match and match.group(1) in fake.comments:
                        return self._send(200, {"attributes": {"type": "CaseComment"}, **fake.comments[match.group(1)]})
                return self._missing()


        self._serve(Handler)

    def _comment(self, fields: dict, author: str, at: datetime | None = None) -> dict:
        number = len(self.comments) + 1
        comment_id = f"00a5g00000cm{number:03d}AAA"  # no capitals: the suffix is AAA
        comment = {"Id": comment_id, "ParentId": fields["ParentId"], "CommentBody": fields.get("CommentBody", ""),
                   "IsPublished": bool(fields.get("IsPublished", False)), "CreatedById": author,
                   "CreatedDate": (at.strftime("%Y-%m-%dT%H:%M:%S.000+0000") if at else "2026-01-01T00:05:00.000+0000")}
        self.comments[comment_id] = comment
        return comment

    def agent_comment(self, text: str, *, author: str, published: bool = True, at: datetime | None = None) -> dict:
        """A CaseComment an agent wrote on the Case in Salesforce."""
        with self._lock:
            return dict(self._comment({"ParentId": CASE_ID, "CommentBody": text, "IsPublished": published}, author, at))

    def hub_comments(self, *, published: bool) -> list[dict]:
        with self._lock:
            return [dict(c) for c in self.comments.values()
                    if c["CreatedById"] == HUB_USER and c["IsPublished"] is published]
