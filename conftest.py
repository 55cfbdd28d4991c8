"""Runs the Python examples in README.md and docs/*.md as tests, with Sybil.

Each document's examples run in order in one namespace, so a later example can
use what an earlier one defined. An example that cannot run here (it needs a
live server, or is a fragment) is marked in the Markdown with
``<!-- skip: next "reason" -->``, which the rendered site does not show.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

from gecko_otel import _guard, _state


@pytest.fixture
def _doc_example(tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Runs one example in a temporary working directory, so files it writes
    (``sqlite:///gecko_otel.db``) land there, and fails it if it leaves a global
    Monitor installed or gecko-otel reported an internal error."""
    monkeypatch.chdir(tmp_path)
    errors: list[tuple[str, BaseException]] = []

    def listener(where: str, exc: BaseException) -> None:
        errors.append((where, exc))

    _guard.add_internal_error_listener(listener)
    before = _state.monitor()
    declared = dict(_state._declared)
    try:
        yield
    finally:
        _guard.remove_internal_error_listener(listener)
        _state._declared.clear()
        _state._declared.update(declared)
        leaked = _state.monitor()
        _state.install(before, arm=False)
    assert leaked is before, "the example left a global Monitor installed: call monitor.shutdown()"
    if errors:
        where, exc = errors[0]
        pytest.fail(f"gecko-otel internal error in {where}: {exc!r}", pytrace=False)


pytest_collect_file = Sybil(
    parsers=[PythonCodeBlockParser(), SkipParser()],
    patterns=["README.md", "docs/*.md"],
    fixtures=["_doc_example"],
).pytest()
