"""Validation of the experiment configurations (model, data, training) at their boundary.

Every configuration is a frozen dataclass whose `__post_init__` runs a `Checks`: all bad
fields are reported at once, each naming the field, its value and the allowed range, so a
typo in a notebook parameter or a YAML file is fixed in one go. `from_mapping` builds a
(nested) configuration from plain data and rejects unknown keys with a near-miss hint.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from phasebook.errors import PhasebookError, Problem, suggest


class ConfigError(PhasebookError, ValueError):
    """An invalid configuration value; a ValueError too, so generic callers can catch it."""


class Checks:
    """Collects problems with one configuration object; `done()` raises them together."""

    def __init__(self, config: object):
        self.config = config
        self.where = type(config).__name__
        self.problems: list[Problem] = []

    def _value(self, name: str) -> Any:
        return getattr(self.config, name)

    def fail(self, name: str, message: str) -> None:
        self.problems.append(Problem(self.where, name, message))

    def rule(self, ok: bool, name: str, message: str) -> None:
        if not ok:
            self.fail(name, f"is {self._value(name)!r}; {message}")

    def range(self, name: str, lo: float | None = None, hi: float | None = None, *,
              lo_open: bool = False, hi_open: bool = False, integer: bool = False) -> None:
        """The field is a number in [lo, hi] (or open at either end); None means unbounded."""
        value = self._value(name)
        kind = "an integer" if integer else "a number"
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if (integer and not isinstance(value, int)) or not is_number:
            self.fail(name, f"is {value!r}; must be {kind}.")
            return
        if value != value:  # NaN compares unequal to everything, so no bound would catch it
            self.fail(name, f"is NaN; must be {kind}.")
            return
        too_low = lo is not None and (value <= lo if lo_open else value < lo)
        too_high = hi is not None and (value >= hi if hi_open else value > hi)
        if too_low or too_high:
            left = "(-∞" if lo is None else f"{'(' if lo_open else '['}{lo}"
            right = "∞)" if hi is None else f"{hi}{')' if hi_open else ']'}"
            interval = f"{left}, {right}"
            self.fail(name, f"is {value!r}; allowed: {kind} in {interval}.")

    def choice(self, name: str, choices: Iterable[Any]) -> None:
        value = self._value(name)
        choices = list(choices)
        if value not in choices:
            hint = suggest(str(value), [str(c) for c in choices])
            self.fail(name, f"is {value!r}; allowed: {', '.join(repr(c) for c in choices)}.{hint}")

    def done(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)


C = TypeVar("C")


def from_mapping(cls: type[C], data: Mapping[str, Any], where: str = "") -> C:
    """Build dataclass `cls` from `data`, recursing into dataclass-typed fields.

    Unknown keys are errors with a suggestion; values of the wrong basic type are errors; the
    dataclass's own checks then validate ranges. Tuples given as lists are converted.
    """
    where = where or cls.__name__
    if not isinstance(data, Mapping):
        raise ConfigError([Problem(where, "", f"expected a mapping of fields, got {data!r}.")])
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    problems, kwargs = [], {}
    for key, value in data.items():
        if key not in fields:
            problems.append(Problem(where, key, "unknown field." + suggest(key, fields)
                                    + f" Fields: {', '.join(fields)}."))
            continue
        try:
            kwargs[key] = _coerce(hints[key], value, f"{where}.{key}")
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return value if isinstance(value, hint) else from_mapping(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is tuple and isinstance(value, list | tuple):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, where) for v in value)
        if len(args) != len(value):
            raise ConfigError([Problem(where, "", f"expects {len(args)} values, got {value!r}.")])
        return tuple(_coerce(a, v, where) for a, v in zip(args, value, strict=True))
    if origin is dict and isinstance(value, Mapping):
        return {_coerce(args[0], k, where): _coerce(args[1], v, where) for k, v in value.items()}
    if origin is typing.Literal:
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            hint = suggest(str(value), map(str, args))
            raise ConfigError([Problem(where, "", f"is {value!r}; allowed: {allowed}.{hint}")])
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and type(value) is not hint:
        raise ConfigError([Problem(where, "", f"is {value!r}; must be of type {hint.__name__}.")])
    return value


def to_mapping(config: Any) -> dict[str, Any]:
    """Plain data (JSON-ready) for a configuration; the inverse of `from_mapping`."""
    return dataclasses.asdict(config)
