"""Typing configuration sections whose model a registry chooses: channel providers, destination
connectors, media sources.

A section's model is known only once its key is read (`channels.twilio` is the Twilio adapter's
settings), so pydantic cannot type it from an annotation. Validating each section here, inside the
enclosing model's validator, keeps one validation pass for the whole file and every error's full
path (`channels.twilio.auth_tokens: Field required`), which a plain nested `model_validate` would
lose (pydantic drops the section's key).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError


def typed_sections(
    sections: Mapping[str, Any], models: Mapping[str, type[BaseModel]], *, prefix: tuple[str | int, ...] = (),
) -> tuple[dict[str, BaseModel], list[InitErrorDetails]]:
    """Each section validated by its model (every key must have one), and every problem found,
    located at `<prefix>.<key>.<field...>`."""
    typed: dict[str, BaseModel] = {}
    errors: list[InitErrorDetails] = []
    for key, body in sections.items():
        try:
            typed[key] = models[key].model_validate(body if body is not None else {})
        except ValidationError as exc:
            errors.extend(relocated(exc, (*prefix, key)))
    return typed, errors


def validate_together(handler: Callable[[Any], Any], data: Any, errors: list[InitErrorDetails], title: str) -> Any:
    """Run a wrap validator's `handler` on `data` and raise its errors and `errors` as one
    `ValidationError`, so a file with problems in several sections lists them all at once."""
    try:
        result = handler(data)
    except ValidationError as exc:
        errors = [*errors, *relocated(exc, ())]
        result = None
    if errors:
        raise ValidationError.from_exception_data(title, errors)
    return result


def relocated(exc: ValidationError, prefix: tuple[str | int, ...]) -> list[InitErrorDetails]:
    """`exc`'s errors with `prefix` in front of their locations, their messages kept as they are."""
    return [
        InitErrorDetails(
            type=PydanticCustomError("invalid_section", "{message}", {"message": error["msg"]}),
            loc=(*prefix, *error["loc"]), input=error.get("input"),
        )
        for error in exc.errors(include_url=False)
    ]


def problem(loc: tuple[str | int, ...], message: str, value: Any = None) -> InitErrorDetails:
    """One error at `loc` with `message`, for checks a model cannot express."""
    return InitErrorDetails(type=PydanticCustomError("invalid_section", "{message}", {"message": message}),
                            loc=loc, input=value)


def fail_at(title: str, loc: tuple[str | int, ...], message: str, value: Any = None) -> ValidationError:
    """A `ValidationError` at `loc` (relative to the model being validated), for a model
    validator whose check spans fields but whose problem has one place."""
    return ValidationError.from_exception_data(title, [problem(loc, message, value)])
