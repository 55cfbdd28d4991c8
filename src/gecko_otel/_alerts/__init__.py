"""Alerts: alert values, the alert engine (lifecycle, repeats, inhibition) and dispatch."""
