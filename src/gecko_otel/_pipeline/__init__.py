"""The run pipeline: each finished run through history, health rules and the alert engine."""
