"""The hand-written contract pages list every name the code defines."""

from __future__ import annotations

from pathlib import Path

import pytest

from gecko_otel import semconv
from gecko_otel._config import ENV_VARS, MonitorConfig

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _names() -> list[str]:
    skip = {"SCOPE_NAME", "DURATION_BUCKETS", "ERROR_TYPE_OTHER", "EVENT_MESSAGE"}
    return [
        value
        for key, value in vars(semconv).items()
        if key.isupper() and key not in skip and isinstance(value, str)
    ]


@pytest.mark.parametrize("name", _names())
def test_every_emitted_name_is_in_the_telemetry_contract(name: str) -> None:
    assert f"`{name}" in (DOCS / "telemetry.md").read_text(encoding="utf-8")


def test_every_environment_variable_is_in_the_configuration_page() -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    fields = {f for f in MonitorConfig.__dataclass_fields__ if f != "collectors"}
    assert set(ENV_VARS) == fields
    missing = [variable for variable, _ in ENV_VARS.values() if f"`{variable}`" not in text]
    assert not missing, missing
