"""The words an operation of the OpenAPI document is written in: its replies, body, parameters.

A module of its own so that a provider's package can describe its own routes (the channel
registry's `API_CONTRACTS`) without importing the registry that collects them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JSON = "application/json"


@dataclass(frozen=True)
class Param:
    name: str
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass(frozen=True)
class Reply:
    """A success (or redirect) response: its status, description, body model and media type."""

    status: int
    description: str
    model: Any = None
    media: str | None = JSON
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Body:
    """A request body: a pydantic model (or a JSON Schema dict) per media type."""

    schemas: dict[str, Any]
    required: bool = True
    description: str = ""
    #: Models a JSON Schema dict of `schemas` refers to (`#/components/schemas/<name>`).
    refs: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    tag: str
    summary: str
    replies: tuple[Reply, ...]
    #: The 4xx/5xx statuses it answers, each in the one error shape.
    errors: tuple[int, ...]
    #: The API key scope it needs; None for a public route (or, with `any_key`, any valid key).
    scope: str | None = None
    #: Needs a valid key whatever its scopes (`GET /v1/me`).
    any_key: bool = False
    description: str = ""
    body: Body | None = None
    query: tuple[Param, ...] = ()
    #: Path parameter descriptions (and schemas, by name) beyond "a string".
    path_params: dict[str, Param] = field(default_factory=dict)
    headers: tuple[Param, ...] = ()
    #: The route of the table that answers this path, when it is not the path itself: API Gateway
    #: and the embedded gateway send `/console/` to the `/console` route, which tells them apart.
    served_by: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.method, self.path

    @property
    def route_key(self) -> tuple[str, str]:
        """The (method, path) of the route of the table that answers it."""
        return self.method, self.served_by or self.path
