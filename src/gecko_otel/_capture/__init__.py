"""Capture: turning calls into collection runs, spans and metrics.

The decorators and the run context start a span per run; the span processor
hands each finished run on; the instruments and observables are the metric
side. Nothing here knows about history, health or storage: finished runs
leave through the sink the Monitor passes in.
"""
