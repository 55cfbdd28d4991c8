"""Names of every span attribute, event and metric gecko-otel emits.

One module owns the names so that the decorators, the history processor, the
tests and ``docs/reference.md`` cannot drift apart. Names follow the
OpenTelemetry conventions (dotted, lower case); ``code.function.name`` and
``error.type`` are the standard semantic-convention attributes.
"""

from __future__ import annotations

from typing import Final

#: Instrumentation scope of every span and metric gecko-otel creates.
SCOPE_NAME: Final = "gecko_otel"

# -- span attributes ---------------------------------------------------------
COLLECTOR_TYPE: Final = "gecko.collector.type"
EXECUTION_ID: Final = "gecko.execution.id"
COLLECTION_STATUS: Final = "gecko.collection.status"
COLLECTION_RECORDS: Final = "gecko.collection.records"
COLLECTION_WARNINGS: Final = "gecko.collection.warnings"
COLLECTION_ERRORS: Final = "gecko.collection.errors"
COLLECTION_DROPPED_MESSAGES: Final = "gecko.collection.dropped_messages"
METADATA_PREFIX: Final = "gecko.metadata."
CODE_FUNCTION_NAME: Final = "code.function.name"
ERROR_TYPE: Final = "error.type"

# -- scheduled runs (the APScheduler plugin) ----------------------------------
FAAS_TRIGGER: Final = "faas.trigger"
FAAS_TIME: Final = "faas.time"
FAAS_CRON: Final = "faas.cron"
SCHEDULE_TRIGGER: Final = "gecko.schedule.trigger"
SCHEDULE_JOB_ID: Final = "gecko.schedule.job_id"

# -- span events -------------------------------------------------------------
EVENT_WARNING: Final = "gecko.collection.warning"
EVENT_ERROR: Final = "gecko.collection.error"
EVENT_MESSAGE: Final = "message"

#: ``error.type`` for a run that returned a result whose ``success`` is false:
#: there is no exception class to name, and the semantic conventions reserve
#: ``_OTHER`` for exactly this case.
ERROR_TYPE_OTHER: Final = "_OTHER"

# -- metrics -----------------------------------------------------------------
METRIC_DURATION: Final = "gecko.collection.duration"
METRIC_RECORDS: Final = "gecko.collection.records"
#: Runs ended, by ``gecko.collection.status``: the only metric that counts
#: missed and skipped runs (they have no duration).
METRIC_RUNS: Final = "gecko.collection.runs"
METRIC_ACTIVE: Final = "gecko.collection.active"
METRIC_HEALTH_SCORE: Final = "gecko.collector.health_score"
METRIC_HEALTH_STATUS: Final = "gecko.collector.health_status"
METRIC_CONSECUTIVE_FAILURES: Final = "gecko.collector.consecutive_failures"
METRIC_LAST_SUCCESS: Final = "gecko.collector.last_success_time"
METRIC_ALERTS_ACTIVE: Final = "gecko.alerts.active"
#: The baseline: each collector's usual records per run and run time (medians).
METRIC_USUAL_RECORDS: Final = "gecko.collector.usual_records"
METRIC_USUAL_DURATION: Final = "gecko.collector.usual_duration"
#: Unix time of the last run that collected records (``no_data``).
METRIC_LAST_RECORDS: Final = "gecko.collector.last_records_time"
#: What gecko-otel lost and counted, by ``gecko.drop.reason``: evicted_collectors,
#: dropped_notifications, handler_errors, handler_timeouts, internal_errors.
METRIC_DROPPED: Final = "gecko.monitor.dropped"

# -- metric-only attributes --------------------------------------------------
ALERT_LEVEL: Final = "gecko.alert.level"
ALERT_RULE: Final = "gecko.alert.rule"
DROP_REASON: Final = "gecko.drop.reason"

#: Histogram bucket boundaries (seconds) advised for ``gecko.collection.duration``.
#: Collection runs last from tens of milliseconds (a cached API page) to an
#: hour (a full backfill); the SDK's default buckets stop at 10 s.
DURATION_BUCKETS: Final[tuple[float, ...]] = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
)
