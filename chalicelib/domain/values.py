"""Frozen value classes that cost nothing to define.

`@dataclass(frozen=True)` writes and `exec`s the source of six methods for every class it
decorates (`__init__`, `__repr__`, `__eq__`, `__hash__`, `__setattr__`, `__delattr__`): about
0.3 ms a class, 15 ms of every worker's cold start for the store's 40 record types alone
(`adapters/store/records.py`, issue 14). A `Value` subclass reads its fields from its annotations
once and shares generic methods, with a frozen dataclass's behaviour: positional or keyword
construction with defaults, equality and hashing by type and fields, a dataclass-style repr,
assignment refused with `dataclasses.FrozenInstanceError`, and `__match_args__` for `match`.
Type checkers see a frozen dataclass (`dataclass_transform`).

For immutable records: `replace` copies one with changes (`dataclasses.replace`); a default
made per instance (`field(default_factory=...)`) is a subclass `__init__` that fills it in and
calls `Value.__init__` with every field. Mutable records and service objects (`Page`,
`LinkPlan`, `RoutingContext`) are a `Record`: declared `__slots__` and an explicit `__init__`,
with equality and repr by field. A class needing other `field()` options, `__post_init__` or
inheritance of a `Value`'s fields stays a dataclass.
"""

from dataclasses import FrozenInstanceError
from typing import Any, ClassVar, dataclass_transform, get_origin

_MISSING = object()


def _is_class_var(annotation: Any) -> bool:
    if isinstance(annotation, str):  # under `from __future__ import annotations`
        return annotation.startswith(("ClassVar", "typing.ClassVar"))
    return annotation is ClassVar or get_origin(annotation) is ClassVar


@dataclass_transform(eq_default=True, frozen_default=True)
class Value:
    """Subclass and annotate the fields; a default is a plain class attribute (immutable values
    only: it is shared, like a dataclass default)."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[tuple[Any, ...]] = ()
    _field_set: ClassVar[frozenset[str]] = frozenset()
    _default_map: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if any(base is not Value and issubclass(base, Value) for base in cls.__bases__):
            raise TypeError(f"{cls.__name__}: a Value cannot extend another Value (declare its fields whole)")
        fields = tuple(name for name, annotation in cls.__dict__.get("__annotations__", {}).items()
                       if not _is_class_var(annotation))
        defaults = tuple(cls.__dict__.get(name, _MISSING) for name in fields)
        seen_default = False
        for name, default in zip(fields, defaults):
            if default is not _MISSING:
                seen_default = True
            elif seen_default:
                raise TypeError(f"{cls.__name__}: non-default field {name!r} follows a default one")
        cls._fields = fields
        cls._defaults = defaults
        cls._field_set = frozenset(fields)
        cls._default_map = {name: default for name, default in zip(fields, defaults) if default is not _MISSING}
        cls.__match_args__ = fields

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Fast paths (values are built per message on hot paths): every field given or defaulted,
        # none twice. Anything else (the errors) takes the checked way, for its messages.
        if not args:
            values = {**self._default_map, **kwargs} if self._default_map else kwargs
            if values.keys() == self._field_set:
                object.__setattr__(self, "__dict__", values)
                return
        elif not kwargs and len(args) == len(self._fields):
            object.__setattr__(self, "__dict__", dict(zip(self._fields, args)))
            return
        elif len(args) <= len(self._fields) and (not kwargs or kwargs.keys().isdisjoint(self._fields[:len(args)])):
            values = {**self._default_map, **dict(zip(self._fields, args)), **kwargs}
            if values.keys() == self._field_set:
                object.__setattr__(self, "__dict__", values)
                return
        fields = self._fields
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__}() takes {len(fields)} positional arguments but {len(args)} were given")
        values = dict(zip(fields, args))
        if kwargs:
            for name, value in kwargs.items():
                if name in values:
                    raise TypeError(f"{type(self).__name__}() got multiple values for argument {name!r}")
                if name not in fields:
                    raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument {name!r}")
                values[name] = value
        if len(values) < len(fields):
            for name, default in zip(fields, self._defaults):
                if name not in values:
                    if default is _MISSING:
                        raise TypeError(f"{type(self).__name__}() missing required argument: {name!r}")
                    values[name] = default
            values = {name: values[name] for name in fields}
        object.__setattr__(self, "__dict__", values)

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={self.__dict__[name]!r}" for name in self._fields)
        return f"{type(self).__qualname__}({inner})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return astuple(self) == astuple(other)  # type: ignore[arg-type]
        return NotImplemented

    def __hash__(self) -> int:
        return hash(astuple(self))

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")


def astuple(value: Value) -> tuple[Any, ...]:
    """The fields' values in declaration order: `dataclasses.astuple` without its deep copy, which
    values of immutable fields (strings, numbers, datetimes) do not need."""
    return tuple(value.__dict__[name] for name in value._fields)


def replace(value: Value, /, **changes: Any) -> Any:
    """A copy of `value` with `changes`: `dataclasses.replace` for a `Value`."""
    return type(value)(**{**value.__dict__, **changes})


class Record:
    """Mutable counterpart of `Value` for service objects and working state: a subclass declares
    `__slots__` (its own fields, in order, after those of a `Record` it extends) and writes its
    own `__init__`; equality and repr go by the fields, and, like a mutable dataclass, it is not
    hashable. Costs nothing to define, where a `@dataclass` execs its generated methods at import."""

    __slots__ = ()
    __hash__ = None  # type: ignore[assignment]
    _fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("__slots__", ())
        cls._fields = tuple(name for base in reversed(cls.__mro__[1:]) if issubclass(base, Record)
                            for name in base.__dict__.get("__slots__", ())) + (own if isinstance(own, tuple) else (own,))

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__qualname__}({inner})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return all(getattr(self, name) == getattr(other, name) for name in self._fields)
        return NotImplemented
