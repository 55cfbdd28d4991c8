"""``python -m gecko_otel``: the ``gecko-otel`` command line (`gecko_otel.cli`)."""

from __future__ import annotations

import sys

from gecko_otel.cli import main

if __name__ == "__main__":
    sys.exit(main())
