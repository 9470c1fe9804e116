"""`HubApp`: the request object and Lambda context belong to the thread serving the request."""

from __future__ import annotations

import threading

from chalice import Blueprint

from chalicelib.api.application import HubApp


def test_each_thread_sees_only_the_request_it_set():
    app = HubApp(app_name="isolation")
    blueprint = Blueprint(__name__)
    app.register_blueprint(blueprint)
    seen: dict[str, object] = {}
    ready, go = threading.Barrier(2), threading.Event()

    def serve(name: str) -> None:
        app.current_request = f"request-{name}"
        app.lambda_context = f"context-{name}"
        ready.wait()  # both threads have set theirs before either reads
        go.wait(1)
        seen[name] = (app.current_request, blueprint.current_request, app.lambda_context)

    threads = [threading.Thread(target=serve, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    go.set()
    for thread in threads:
        thread.join()

    assert seen == {
        "a": ("request-a", "request-a", "context-a"),
        "b": ("request-b", "request-b", "context-b"),
    }
    assert app.current_request is None  # this thread never served a request


def test_a_plain_chalice_app_would_share_the_request():
    """The control: without HubApp, the second thread's request replaces the first's."""
    from chalice import Chalice

    app = Chalice(app_name="shared")
    app.current_request = "request-a"
    thread = threading.Thread(target=lambda: setattr(app, "current_request", "request-b"))
    thread.start()
    thread.join()
    assert app.current_request == "request-b"


# --- binary media types: answered from a set, the same answers as Chalice's list --------------------

import pytest  # noqa: E402
from chalice import Chalice, Response  # noqa: E402
from chalice.app import _matches_content_type  # noqa: E402

from chalicelib.api.application import BinaryTypes  # noqa: E402

_TYPES = ["application/octet-stream", "Image/PNG", "multipart/form-data", "audio/mpeg"]


@pytest.mark.parametrize("content_type", [
    "", "text/plain", "image/png", "IMAGE/png", "image/png; charset=binary", "text/html, image/png",
    "application/json", "*/*", "text/*", "multipart/form-data; boundary=x", " audio/mpeg ;q=1",
])
@pytest.mark.parametrize("types", [_TYPES, [*_TYPES, "*/*"], []])
def test_binary_types_answer_as_chalice_does(content_type, types):
    assert BinaryTypes(types).match(content_type) is _matches_content_type(content_type, types)


def _apps():
    """A HubApp and a plain Chalice app with the same routes, to compare their Lambda answers."""
    apps = []
    for cls in (HubApp, Chalice):
        app = cls(app_name="binary")
        app.api.binary_types.append("application/x-hub-test")

        @app.route("/thing/{kind}", methods=["GET"])
        def thing(kind):
            types = {"text": "text/plain", "png": "image/png", "hub": "Application/X-Hub-Test"}
            return Response(body=b"\x00\x01" if kind != "text" else b"ok", status_code=200,
                            headers={"Content-Type": types[kind]})

        apps.append(app)
    return apps


def _event(kind: str, accept: str | None) -> dict:
    headers = {"accept": accept} if accept else {}
    return {"resource": "/thing/{kind}", "path": f"/thing/{kind}", "httpMethod": "GET", "headers": headers,
            "multiValueHeaders": {}, "queryStringParameters": None, "multiValueQueryStringParameters": None,
            "pathParameters": {"kind": kind}, "stageVariables": None,
            "requestContext": {"resourcePath": "/thing/{kind}", "httpMethod": "GET", "path": f"/thing/{kind}",
                               "requestId": "r"}, "body": None, "isBase64Encoded": False}


@pytest.mark.parametrize("kind", ["text", "png", "hub"])
@pytest.mark.parametrize("accept", [None, "image/png", "*/*", "application/x-hub-test", "text/html"])
def test_responses_are_what_chalice_answers(kind, accept):
    hub, chalice = _apps()
    assert hub(_event(kind, accept), None) == chalice(_event(kind, accept), None)


def test_binary_types_added_after_a_request_count():
    hub, _ = _apps()
    assert hub(_event("text", None), None)["statusCode"] == 200
    hub.api.binary_types.append("text/plain")
    # Now binary: without an Accept header that allows it, Chalice's 400; with one, base64.
    assert hub(_event("text", None), None)["statusCode"] == 400
    answer = hub(_event("text", "text/plain"), None)
    assert answer["isBase64Encoded"] is True and answer["body"] == "b2s="
