"""Python programs run in a fresh interpreter, for what needs a clean process
(``setup()`` installs global providers; ``atexit`` and signals are per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any


def run_program(code: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``code`` (dedented) without the caller's ``OTEL_*`` and ``GECKO_OTEL_*``
    variables, plus ``env``; it must exit 0 and print a JSON object last."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "GECKO_OTEL_"))}
    clean.update(env or {})
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
