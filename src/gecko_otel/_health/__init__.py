"""Health: per-collector state, the rules, schedule expectations and the watchdog clock."""
