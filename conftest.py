"""Runs the Python examples in README.md and docs/*.md as tests, with Sybil.

Each document's examples run in order in one namespace, so a later example can
use what an earlier one defined. An example that cannot run here (it needs a
live server, or is a fragment) is marked in the Markdown with
``<!-- skip: next "reason" -->``, which the rendered site does not show.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

from gecko_otel import _guard, _state

#: Documents whose examples form one program split by prose (README.md): a
#: Monitor one example sets up may serve the next, and is checked at the end.
_ONE_PROGRAM = ("README.md",)


@pytest.fixture
def _doc_example(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Runs one example in a temporary working directory, so files it writes
    (``sqlite:///gecko_otel.db``) land there, and fails it if it leaves a global
    Monitor installed or gecko-otel reported an internal error."""
    example = request.node.example
    document = example.document
    one_program = Path(document.path).name in _ONE_PROGRAM
    last = list(document)[-1] is example
    # One working directory per document, so a relative SQLite path stays one file.
    monkeypatch.chdir(document.namespace.setdefault("__workdir__", tmp_path))
    errors: list[tuple[str, BaseException]] = []

    def listener(where: str, exc: BaseException) -> None:
        errors.append((where, exc))

    _guard.add_internal_error_listener(listener)
    before = _state.monitor()
    if one_program:
        before = document.namespace.setdefault("__monitor_before__", before)
    saved = _state.snapshot()
    try:
        yield
    finally:
        _guard.remove_internal_error_listener(listener)
        leaked = _state.monitor()
        if not one_program or last:
            _state.restore((before, saved[1]))
    if errors:
        where, exc = errors[0]
        pytest.fail(f"gecko-otel internal error in {where}: {exc!r}", pytrace=False)
    if not one_program or last:
        assert leaked is before, (
            "the example left a global Monitor installed: end it with monitor.shutdown()"
        )


pytest_collect_file = Sybil(
    parsers=[PythonCodeBlockParser(), SkipParser()],
    patterns=["README.md", "docs/*.md"],
    fixtures=["_doc_example"],
).pytest()
