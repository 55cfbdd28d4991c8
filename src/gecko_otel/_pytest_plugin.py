"""pytest plugin: the ``gecko_otel_runs`` fixture (registered via the ``pytest11`` entry point)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gecko_otel.testing import CapturedRuns, capture_runs


@pytest.fixture
def gecko_otel_runs() -> Iterator[CapturedRuns]:
    """Capture the collection runs of one test (see `gecko_otel.testing.capture_runs`)."""
    with capture_runs() as captured:
        yield captured
