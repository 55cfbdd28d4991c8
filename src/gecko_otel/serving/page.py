"""The status page: one self-contained HTML file (``page.html``), no external asset.

The page holds no data: its script fetches ``/status`` every few seconds and
builds the DOM with ``textContent`` and ``createElementNS`` only, so no string
from a store is ever parsed as markup. A Content-Security-Policy allows exactly
the page's own inline style and script (by hash) and requests to this server,
so markup that slipped in anyway could run nothing.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Final

_REFRESH_MARK: Final = "__REFRESH_MS__"


@cache
def _template() -> str:
    return (resources.files("gecko_otel.serving") / "page.html").read_text(encoding="utf-8")


def _hash(block: str) -> str:
    digest = hashlib.sha256(block.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


@dataclass(frozen=True, slots=True)
class Page:
    """The page's bytes and the headers that go with them.

    Args:
        refresh_seconds: How often the page fetches ``/status``.
    """

    html: bytes
    headers: tuple[tuple[str, str], ...]

    @classmethod
    def build(cls, refresh_seconds: float) -> Page:
        """The page polling every ``refresh_seconds``."""
        text = _template().replace(_REFRESH_MARK, str(max(100, round(refresh_seconds * 1000))))
        scripts = re.findall(r"<script>(.*?)</script>", text, re.DOTALL)
        styles = re.findall(r"<style>(.*?)</style>", text, re.DOTALL)
        policy = "; ".join(
            (
                "default-src 'none'",
                f"script-src {' '.join(_hash(s) for s in scripts)}",
                f"style-src {' '.join(_hash(s) for s in styles)}",
                "connect-src 'self'",
                "img-src data:",
                "base-uri 'none'",
                "form-action 'none'",
                "frame-ancestors 'none'",
            )
        )
        return cls(
            text.encode("utf-8"),
            (("Content-Security-Policy", policy), ("Referrer-Policy", "no-referrer")),
        )
