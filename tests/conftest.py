"""Shared fixtures: a fresh copy of the fixture book, and one full build of it per session;
the Triton interpreter for the kernel tests."""

from __future__ import annotations

import os

# The kernel tests run Triton kernels on CPU tensors in Triton's interpreter, which is chosen
# when a kernel is defined: so before anything imports phasebook.kernels. Code that does not
# ask for backend="triton" still runs the plain-torch references on CPU.
os.environ["TRITON_INTERPRET"] = "1"

import shutil
from pathlib import Path

import pytest

from phasebook.config import load_book

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "book"


def copy_fixture(dest: Path) -> Path:
    shutil.copytree(FIXTURE, dest, ignore=shutil.ignore_patterns("build"))
    return dest


@pytest.fixture
def fixture_book(tmp_path: Path) -> Path:
    """A private copy of the fixture book that a test may edit."""
    return copy_fixture(tmp_path / "book")


@pytest.fixture(scope="session")
def built_book(tmp_path_factory: pytest.TempPathFactory):
    """The fixture book built once (default profile): `tiny` succeeds, `broken` fails."""
    from phasebook.book.build import build

    root = copy_fixture(tmp_path_factory.mktemp("built") / "book")
    lines: list[str] = []
    outcomes = build(load_book(root), echo=lines.append)
    return root, outcomes, "\n".join(lines)
