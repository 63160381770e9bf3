"""Notebook parameters: typed schema from the parameters cell, strict conversion of values."""

from __future__ import annotations

import pytest

from phasebook.book.params import params_hash, parse_parameters_cell, resolve
from phasebook.cli import main
from phasebook.errors import PhasebookError

CELL = """max_degree: int = 15  # highest degree
noise: float = 0.05  # label noise
fast: bool = False  # skip the slow part
name: str = "run"  # a label
sizes: list[int] = [1, 2]  # model sizes
"""


def test_schema_types_defaults_and_help():
    schema = parse_parameters_cell(CELL, "nb.py", 10)
    assert list(schema) == ["max_degree", "noise", "fast", "name", "sizes"]
    assert schema["noise"].type == "float" and schema["noise"].default == 0.05
    assert schema["max_degree"].help == "highest degree"


def test_values_are_converted_to_declared_types():
    schema = parse_parameters_cell(CELL, "nb.py")
    values = resolve(schema, {"max_degree": "7", "noise": "1", "fast": "yes", "sizes": "3,4,5"},
                     "nb", "-p")
    assert values == {"max_degree": 7, "noise": 1.0, "fast": True, "name": "run", "sizes": [3, 4, 5]}
    assert isinstance(values["noise"], float)


@pytest.mark.parametrize("name,value,needle", [
    ("max_degree", "2.5", "cannot use '2.5'"),
    ("noise", "abc", "cannot use 'abc'"),
    ("fast", "maybe", "expected true or false"),
    ("sizes", "1,x", "cannot use '1,x'"),
    ("max_degree", True, "cannot use True"),
])
def test_mistyped_value_lists_valid_parameters(name, value, needle):
    schema = parse_parameters_cell(CELL, "nb.py")
    with pytest.raises(PhasebookError) as info:
        resolve(schema, {name: value}, "nb", "-p")
    text = str(info.value)
    assert needle in text and "max_degree: int = 15  # highest degree" in text


def test_unknown_parameter_suggests_and_lists():
    schema = parse_parameters_cell(CELL, "nb.py")
    with pytest.raises(PhasebookError) as info:
        resolve(schema, {"max_degre": 3}, "nb", "book.yml:30")
    text = str(info.value)
    assert text.startswith("book.yml:30: max_degre: 'nb' has no parameter 'max_degre'.")
    assert "Did you mean 'max_degree'?" in text and "sizes: list[int] = [1, 2]" in text


def test_bad_parameters_cell_is_located():
    with pytest.raises(PhasebookError) as info:
        parse_parameters_cell("a: int = 1\nb = 2\nc: dict = {}\nd: int = 1.5\n", "nb.py", 20)
    lines = [str(p) for p in info.value.problems]
    assert lines[0].startswith("nb.py:21:") and "only hold lines like" in lines[0]
    assert lines[1].startswith("nb.py:22: c: unsupported type 'dict'")
    assert lines[2].startswith("nb.py:23: d: default 1.5 is not int")


def test_params_hash_is_stable_and_sensitive():
    assert params_hash({"a": 1, "b": 2}) == params_hash({"b": 2, "a": 1})
    assert params_hash({"a": 1}) != params_hash({"a": 2})


def test_run_cli_rejects_bad_parameters_without_executing(fixture_book, capsys):
    code = main(["--book", str(fixture_book), "run", "tiny", "-p", "max_degre", "3"])
    err = capsys.readouterr().err
    assert code == 2
    assert "'tiny' has no parameter 'max_degre'" in err and "Did you mean 'max_degree'?" in err
    assert "max_degree: int = 4  # highest degree fitted" in err
    assert main(["--book", str(fixture_book), "run", "tiny", "-p", "seed", "one"]) == 2
    assert "cannot use 'one'" in capsys.readouterr().err
    assert not (fixture_book / "build" / "runs").exists()


def test_profile_with_mistyped_value_fails_check(fixture_book, capsys):
    path = fixture_book / "book.yml"
    path.write_text(path.read_text().replace("{divisor: 2}", "{divisor: two}"))
    assert main(["--book", str(fixture_book), "check"]) == 2
    err = capsys.readouterr().err
    assert "book.yml:22: divisor: cannot use 'two'" in err
