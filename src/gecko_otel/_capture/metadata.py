"""Turning arbitrary metadata into safe OpenTelemetry attribute values.

Collectors attach whatever they have at hand as metadata: network names,
page counts, response objects, ``None``, nested dicts, credentials by
mistake. None of it may break a run, and none of it may leak a secret, so
every value passes through `MetadataSanitizer` before it reaches a
span or an execution record:

* ``str``, ``bool``, ``int`` and ``float`` pass (strings truncated, integers
  outside the OTLP int64 range turned into strings);
* sequences become homogeneous tuples (mixed ones become tuples of strings);
* nested mappings are flattened into dotted keys, down to
  `MAX_DEPTH` levels, and JSON-encoded below that;
* anything else becomes ``str(value)``, or ``<unprintable TypeName>`` when
  even that raises;
* values under keys that look like credentials become ``[REDACTED]``, and
  passwords inside URLs are masked.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from typing import Any, Final, TypeVar

from gecko_otel._config import DEFAULT_SENSITIVE_KEYS
from gecko_otel._values.records import AttributeValue

REDACTED: Final = "[REDACTED]"
_MAX_JUDGED_KEYS: Final = 4096
_MAX_CACHED_KEY: Final = 256
MAX_DEPTH: Final = 4

#: Key fragments that mark a value as a credential. Keys are compared in
#: lower case with camelCase split and ``-``, ``.`` and spaces read as ``_``;
#: a fragment must match whole words of the key (a trailing ``s`` allowed).

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_URL_PASSWORD: Final = re.compile(r"(://[^/@:\s]*):([^/@\s]+)@")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_KEY_SEPARATORS: Final = re.compile(r"[-.\s_]+")
_CAMEL_BOUNDARY: Final = re.compile(r"([a-z0-9])([A-Z])|([A-Z])([A-Z][a-z])")


def _normalise_key(key: str) -> str:
    """``"DB-Password"``, ``"db.password"`` and ``"dbPassword"`` all become ``"db_password"``."""
    split = _CAMEL_BOUNDARY.sub(lambda m: f"{m[1] or m[3]}_{m[2] or m[4]}", key)
    return _KEY_SEPARATORS.sub("_", split).lower()


T = TypeVar("T")
U = TypeVar("U")


def attempt(call: Callable[[], T], fallback: Callable[[Exception], U]) -> T | U:
    """``call()``, or ``fallback(error)`` when the user object it touches raises.

    Metadata is the user's: its ``__str__``, ``items()`` or iteration may
    raise anything, which must cost that value only, never the run.
    """
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - a user object may raise anything
        return fallback(exc)


def _items(mapping: Mapping[Any, Any]) -> list[tuple[Any, Any]]:
    return list(mapping.items())


def _unreadable(exc: Exception) -> Exception:
    return exc


def safe_str(value: object) -> str:
    """``str(value)``, or a placeholder naming the type when ``__str__`` raises."""
    return attempt(lambda: str(value), lambda _: f"<unprintable {type(value).__qualname__}>")


class MetadataSanitizer:
    """Coerces, truncates and redacts metadata.

    Threading: immutable after construction, safe from any thread. Never
    raises for any input value or key.

    Args:
        max_length: Strings (values and keys) are cut to this many characters.
        max_entries: At most this many keys per mapping and items per sequence
            are kept; the rest are dropped.
        sensitive_keys: Key fragments whose values are replaced by ``[REDACTED]``.
    """

    __slots__ = ("_judged", "_max_entries", "_max_length", "_sensitive")

    def __init__(
        self,
        *,
        max_length: int = 4096,
        max_entries: int = 128,
        sensitive_keys: Iterable[str] = DEFAULT_SENSITIVE_KEYS,
    ) -> None:
        self._judged: dict[str, bool] = {}
        self._max_length = max_length
        self._max_entries = max_entries
        fragments = [_normalise_key(k) for k in sensitive_keys if k]
        # A fragment matches whole words of the key (plural allowed), so
        # "auth_token" and "tokens" are redacted but "tokenizer" is not.
        self._sensitive = (
            re.compile("(?:^|_)(?:" + "|".join(re.escape(f) for f in fragments) + ")s?(?:_|$)")
            if fragments
            else None
        )

    def is_sensitive(self, key: str) -> bool:
        """Whether ``key`` names a credential (remembered per key: keys repeat)."""
        judged = self._judged.get(key)
        if judged is None:
            judged = self._sensitive is not None and bool(
                self._sensitive.search(_normalise_key(key))
            )
            # Short keys only: the cache must not keep megabyte keys alive.
            if len(key) <= _MAX_CACHED_KEY and len(self._judged) < _MAX_JUDGED_KEYS:
                self._judged[key] = judged
        return judged

    @staticmethod
    def mask(text: str) -> str:
        """``text`` with passwords in URLs (``scheme://user:password@host``) masked."""
        if "://" in text:
            return _URL_PASSWORD.sub(r"\1:" + REDACTED + "@", text)
        return text

    def text(self, value: object) -> str:
        """A message or value as a bounded string with URL passwords masked.

        Lone surrogates (what ``os.fsdecode`` makes of undecodable bytes)
        become U+FFFD: OTLP and the databases need valid UTF-8.
        """
        text = self.mask(value if isinstance(value, str) else safe_str(value))
        if len(text) > self._max_length:
            text = text[: self._max_length]
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                text = _SURROGATE.sub("\ufffd", text)
        return text

    def sanitize(self, metadata: Mapping[Any, Any] | None) -> dict[str, AttributeValue]:
        """Flatten ``metadata`` into a dict of valid attribute values."""
        out: dict[str, AttributeValue] = {}
        if not metadata:
            return out
        items = attempt(functools.partial(_items, metadata), _unreadable)
        if isinstance(items, BaseException):  # a broken Mapping is still not fatal
            out["_invalid"] = f"<unreadable metadata: {type(items).__qualname__}>"
            return out
        self._flatten("", items, out, 0, self._work_budget())
        return out

    def item(self, key: object, value: object) -> dict[str, AttributeValue]:
        """Sanitize one ``key: value`` pair (flattening it if ``value`` is a mapping)."""
        out: dict[str, AttributeValue] = {}
        self._flatten("", [(key, value)], out, 0, self._work_budget())
        return out

    def _flatten(
        self,
        prefix: str,
        items: Sequence[tuple[Any, Any]],
        out: dict[str, AttributeValue],
        depth: int,
        budget: list[int],
    ) -> None:
        for raw_key, value in items:
            if len(out) >= self._max_entries:
                return
            # Judge the whole key before truncating it: a cut key could hide
            # the fragment that marks it as a credential.
            full_key = f"{prefix}{safe_str(raw_key) or '_'}"
            key = self.text(full_key)
            if self.is_sensitive(full_key):
                out[key] = REDACTED
            elif isinstance(value, Mapping):
                if depth + 1 >= MAX_DEPTH:
                    out[key] = self._json(value, budget)
                else:
                    nested = attempt(functools.partial(_items, value), lambda _: None)
                    if nested is None:  # an unreadable nested mapping
                        out[key] = self.text(value)
                        continue
                    self._flatten(f"{key}.", nested, out, depth + 1, budget)
            else:
                out[key] = self.value(value, budget)

    def value(self, value: object, budget: list[int] | None = None) -> AttributeValue:
        """One value as a valid attribute value (mappings are JSON-encoded).

        ``budget`` (values left to copy) is shared by the values of one call, so
        the work is bounded by the output however the input nests or repeats.
        """
        if budget is None:
            budget = self._work_budget()
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, (bool, float)):
            return value
        if isinstance(value, int):
            return value if _INT64_MIN <= value <= _INT64_MAX else str(value)
        if value is None:
            return "None"
        if isinstance(value, (bytes, bytearray, memoryview)):
            return self.text(bytes(value).decode("utf-8", "replace"))
        if isinstance(value, Mapping):
            return self._json(value, budget)
        if isinstance(value, (Sequence, Set)):
            return self._sequence(value, budget)
        return self.text(value)

    def _sequence(self, values: Iterable[object], budget: list[int]) -> AttributeValue:
        limit = self._max_entries
        items = attempt(
            lambda: [v for _, v in zip(range(limit), values, strict=False)], lambda _: None
        )
        if items is None:  # a sequence whose iteration raises
            return self.text(values)
        if items and all(isinstance(v, bool) for v in items):
            return tuple(bool(v) for v in items)
        if items and all(
            isinstance(v, int) and not isinstance(v, bool) and _INT64_MIN <= v <= _INT64_MAX
            for v in items
        ):
            return tuple(int(v) for v in items)  # type: ignore[call-overload]
        if items and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
            return tuple(float(v) for v in items)  # type: ignore[arg-type]
        return tuple(
            self._json(v, budget) if isinstance(v, (Mapping, list, tuple, Set)) else self.text(v)
            for v in items
        )

    def _work_budget(self) -> list[int]:
        # Values one call may copy into JSON: a few attributes' worth of output.
        return [4 * self._max_length]

    def _json(self, value: object, budget: list[int]) -> str:
        # The JSON is cut to max_length characters, and every value copied adds
        # at least one: at most max_length values (and what is left of the
        # call's budget) bounds the work by the output, not by the paths
        # through the input (a=[a, a] nested n deep has 2**n of them).
        local = [min(self._max_length, max(budget[0], 0))]
        text = attempt(
            lambda: json.dumps(
                self._redacted(value, 0, local, set()), default=safe_str, ensure_ascii=False
            ),
            lambda _: f"<unencodable {type(value).__qualname__}>",
        )
        budget[0] -= min(self._max_length, max(budget[0], 0)) - max(local[0], 0)
        return self.text(text)

    def _redacted(self, value: object, depth: int, budget: list[int], path: set[int]) -> object:
        """A JSON-ready copy of ``value`` with credential keys masked, bounded in depth and in
        values copied (``budget``); a container inside itself (``path``) is not followed."""
        budget[0] -= 1
        if budget[0] < 0:
            return "..."
        if depth > 32:
            return "<too deep>"
        if value is None or isinstance(value, (str, bool, int, float)):
            return value
        if not isinstance(value, (Mapping, list, tuple, Set)):
            return safe_str(value)
        if id(value) in path:
            return "<cycle>"
        path.add(id(value))
        try:
            if isinstance(value, Mapping):
                copy: dict[str, object] = {}
                for raw_key, item in list(value.items())[: self._max_entries]:
                    key = safe_str(raw_key)
                    copy[key] = (
                        REDACTED
                        if self.is_sensitive(key)
                        else self._redacted(item, depth + 1, budget, path)
                    )
                    if budget[0] < 0:
                        break
                return copy
            items = list(value)[: self._max_entries]
            out: list[object] = []
            for item in items:
                out.append(self._redacted(item, depth + 1, budget, path))
                if budget[0] < 0:
                    break
            return out
        finally:
            path.discard(id(value))
