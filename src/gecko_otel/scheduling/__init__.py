"""Scheduler integrations: one module per scheduler, each optional.

``gecko_otel.scheduling.apscheduler`` instruments APScheduler 3.x (install
the ``apscheduler`` extra). Importing this package imports no scheduler;
each module needs its scheduler installed.
"""

from __future__ import annotations

__all__: list[str] = []
