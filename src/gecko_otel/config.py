"""``MonitorConfig``: every tunable of gecko-otel in one validated, frozen object.

Values come from, in order: the argument you pass, the ``GECKO_OTEL_*``
environment variable (through :meth:`MonitorConfig.from_env`), the default.
Invalid values raise :class:`~gecko_otel.errors.ConfigError` at construction,
naming the field (or variable) and what to change.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from gecko_otel.attributes import DEFAULT_SENSITIVE_KEYS
from gecko_otel.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorConfig:
    """Configuration of a :class:`~gecko_otel.Monitor`.

    Attributes:
        max_history_per_collector: Execution records kept in memory per
            collector; the oldest is dropped first. Running statistics keep
            counting past it.
        max_collectors: Distinct collector types tracked in memory. Runs of
            collectors beyond it still get spans and metrics but are not kept
            in history; they are counted in
            ``Monitor.export()["internal"]["dropped_runs"]``.
        max_attribute_length: Metadata strings, warning and error messages are
            cut to this many characters.
        max_metadata_entries: Metadata keys kept per run (and items per
            sequence value).
        max_messages_per_run: Warnings and errors kept per run (each kind);
            later ones are dropped and counted in the record's
            ``dropped_messages`` and the span's ``gecko.collection.dropped_messages``.
        sensitive_keys: Key fragments whose metadata values are replaced by
            ``[REDACTED]`` before they reach a span or a record. Keys are
            compared in lower case with camelCase split and ``-``, ``.`` and
            spaces read as ``_``; a fragment must match whole words of the
            key (``auth_token`` and ``refresh_tokens`` match ``token``,
            ``tokenizer`` does not).
    """

    max_history_per_collector: int = 1000
    max_collectors: int = 10_000
    max_attribute_length: int = 4096
    max_metadata_entries: int = 128
    max_messages_per_run: int = 100
    sensitive_keys: tuple[str, ...] = DEFAULT_SENSITIVE_KEYS

    def __post_init__(self) -> None:
        for field in (
            "max_history_per_collector",
            "max_collectors",
            "max_attribute_length",
            "max_metadata_entries",
            "max_messages_per_run",
        ):
            _require_positive_int(field, getattr(self, field))
        keys: object = self.sensitive_keys
        if (
            isinstance(keys, str)
            or not isinstance(keys, tuple | list)
            or not all(isinstance(k, str) and k for k in keys)
        ):
            raise ConfigError(
                f"MonitorConfig.sensitive_keys must be a tuple of non-empty strings, got {keys!r}"
            )
        object.__setattr__(self, "sensitive_keys", tuple(keys))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> MonitorConfig:
        """Build a config from ``GECKO_OTEL_*`` variables; ``overrides`` win over them.

        Args:
            environ: The environment to read (``os.environ`` by default).
            **overrides: Field values that take precedence over the environment.

        Raises:
            ConfigError: A variable does not parse, or a value is out of range.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field, (variable, parse) in ENV_VARS.items():
            raw = env.get(variable)
            if raw is None or raw.strip() == "":
                continue
            try:
                values[field] = parse(raw.strip())
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{variable}={raw!r} is invalid: {exc}") from None
        values.update(overrides)
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (check the GECKO_OTEL_* environment variables)") from None

    def replace(self, **changes: Any) -> MonitorConfig:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)


def _require_positive_int(field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"MonitorConfig.{field} must be a positive integer, got {value!r}")


def _csv(raw: str) -> tuple[str, ...]:
    parts = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not parts:
        raise ValueError("give comma-separated key fragments, e.g. 'password,token'")
    return parts


#: The one table mapping ``MonitorConfig`` fields to environment variables.
ENV_VARS: Final[dict[str, tuple[str, Callable[[str], Any]]]] = {
    "max_history_per_collector": ("GECKO_OTEL_MAX_HISTORY_PER_COLLECTOR", int),
    "max_collectors": ("GECKO_OTEL_MAX_COLLECTORS", int),
    "max_attribute_length": ("GECKO_OTEL_MAX_ATTRIBUTE_LENGTH", int),
    "max_metadata_entries": ("GECKO_OTEL_MAX_METADATA_ENTRIES", int),
    "max_messages_per_run": ("GECKO_OTEL_MAX_MESSAGES_PER_RUN", int),
    "sensitive_keys": ("GECKO_OTEL_SENSITIVE_KEYS", _csv),
}
