"""Notebook parameters: the `parameters` cell read into a typed schema, and strict coercion.

A parameters cell declares each parameter with a type annotation, a literal default and a
trailing comment that documents it:

    n_train: int = 24  # training points inside the interval

papermill alone only warns about unknown parameters; here they are errors that list every
valid parameter with its type and default.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from phasebook.errors import PhasebookError, Problem, suggest

SCALARS = {"int": int, "float": float, "bool": bool, "str": str}
TYPES = (*SCALARS, *(f"list[{t}]" for t in ("int", "float", "str")))
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str  # one of TYPES
    default: Any
    help: str = ""

    def describe(self) -> str:
        doc = f"  # {self.help}" if self.help else ""
        return f"{self.name}: {self.type} = {self.default!r}{doc}"

    def coerce(self, value: Any) -> Any:
        """Convert `value` (a CLI string or a YAML value) to this parameter's type, or raise ValueError."""
        if self.type.startswith("list["):
            item = Parameter(self.name, self.type[5:-1], None)
            if isinstance(value, str):
                value = [v for v in re.split(r"[,\s]+", value.strip("[] ")) if v]
            if not isinstance(value, list | tuple):
                raise ValueError(f"expected {self.type}")
            return [item.coerce(v) for v in value]
        tp = SCALARS[self.type]
        if isinstance(value, str) and tp is not str:
            text = value.strip()
            if tp is bool:
                if text.lower() in _TRUE | _FALSE:
                    return text.lower() in _TRUE
                raise ValueError("expected true or false")
            return tp(text)  # int("2.5") and float("x") raise ValueError
        if tp is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
            return value
        raise ValueError(f"expected {self.type}, got {type(value).__name__}")


Schema = dict[str, Parameter]


def parse_parameters_cell(source: str, path: str, first_line: int = 1) -> Schema:
    """Read `name: type = literal  # help` lines; anything else in the cell is an error.

    `first_line` is the cell's first line in `path`, so errors point into the source file.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        line = first_line + (exc.lineno or 1) - 1
        raise PhasebookError([Problem(f"{path}:{line}", "", f"parameters cell: {exc.msg}")]) from None
    lines = source.splitlines()
    schema: Schema = {}
    problems = []
    for stmt in tree.body:
        here = f"{path}:{first_line + stmt.lineno - 1}"
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                and stmt.value is not None):
            problems.append(Problem(here, "", "the parameters cell may only hold lines like "
                                    "`name: int = 3  # what it sets`."))
            continue
        name, annotation = stmt.target.id, ast.unparse(stmt.annotation)
        if annotation not in TYPES:
            problems.append(Problem(here, name, f"unsupported type '{annotation}'. Allowed: "
                                    f"{', '.join(TYPES)}." + suggest(annotation, TYPES)))
            continue
        try:
            default = ast.literal_eval(stmt.value)
        except ValueError:
            problems.append(Problem(here, name, "the default must be a literal value."))
            continue
        comment = lines[stmt.lineno - 1].partition("#")[2].strip()
        param = Parameter(name, annotation, default, comment)
        try:
            if param.coerce(default) != default:
                raise ValueError
        except ValueError:
            problems.append(Problem(here, name, f"default {default!r} is not {annotation}."))
            continue
        schema[name] = param
    if problems:
        raise PhasebookError(problems)
    return schema


def describe_schema(schema: Schema) -> str:
    return "\n".join("    " + p.describe() for p in schema.values()) or "    (none)"


def resolve(schema: Schema, overrides: dict[str, Any], notebook: str, where: str) -> dict[str, Any]:
    """The full parameter set: defaults updated by `overrides`, each converted to its type."""
    values = {name: p.default for name, p in schema.items()}
    problems = []
    for name, raw in overrides.items():
        if name not in schema:
            problems.append(Problem(where, name, f"'{notebook}' has no parameter '{name}'."
                                    + suggest(name, schema) + " Valid parameters:\n"
                                    + describe_schema(schema)))
            continue
        try:
            values[name] = schema[name].coerce(raw)
        except ValueError as exc:
            problems.append(Problem(where, name, f"cannot use {raw!r}: {exc}. Valid parameters:\n"
                                    + describe_schema(schema)))
    if problems:
        raise PhasebookError(problems)
    return values


def params_hash(values: dict[str, Any]) -> str:
    """Short stable hash of a full parameter set: names the folder a run's results live in."""
    blob = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
