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
