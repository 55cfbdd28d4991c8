"""Tests that need an external peer skip when it is missing, or fail when CI requires it."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE_INTEGRATION = os.environ.get("GECKO_OTEL_REQUIRE_INTEGRATION") == "1"

NO_POSTGRES = (
    "no PostgreSQL binaries: install the dev group (pgserver: x86_64 Linux, Python <= 3.12)"
    " or a system PostgreSQL"
)


def skip_or_fail(reason: str) -> NoReturn:
    """Skip a test whose external peer is missing, or fail when CI requires it."""
    if REQUIRE_INTEGRATION:
        pytest.fail(f"GECKO_OTEL_REQUIRE_INTEGRATION=1 but {reason}")
    pytest.skip(reason)
