"""Every test here proves one of gecko-otel's guarantees (docs/reliability.md); run them
alone with ``pytest -m reliability``."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/reliability/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.reliability)
