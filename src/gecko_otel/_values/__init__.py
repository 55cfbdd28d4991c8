"""Values: the frozen records, enums and snapshots gecko-otel hands out.

Runs (`ExecutionRecord`, `ExecutionStatistics`, `ExecutionStatus`), health
(`CollectorHealth`, `SystemHealth`, `CollectionStatus`, `AlertLevel`) and
alerts (`Alert`, `AlertState`, `Notification`). Every layer may import them;
they import nothing of gecko-otel but configuration.
"""
