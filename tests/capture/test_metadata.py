"""Hostile metadata is coerced, truncated and redacted, never fatal."""

from __future__ import annotations

from typing import Any

import pytest

import gecko_otel
from gecko_otel import MonitorConfig, semconv, track_collection
from gecko_otel._capture.metadata import REDACTED, MetadataSanitizer
from gecko_otel.testing import CapturedRuns, capture_runs


class RaisingStr:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


class Point:
    def __init__(self, x: int) -> None:
        self.x = x

    def __str__(self) -> str:
        return f"Point({self.x})"


def sanitize(metadata: dict[Any, Any], **kwargs: Any) -> dict[str, Any]:
    return MetadataSanitizer(**kwargs).sanitize(metadata)


def test_primitives_pass_and_odd_values_are_coerced() -> None:
    out = sanitize(
        {
            "s": "solana",
            "b": True,
            "i": 3,
            "f": 1.5,
            "none": None,
            "obj": Point(2),
            "raising": RaisingStr(),
            "bytes": b"\xffok",
            "big": 2**70,
            "ints": [1, 2, 3],
            "mixed_numbers": (1, 2.5),
            "mixed": [1, "a", None],
            "bools": [True, False],
            "set": {7},
            "empty": [],
            7: "int key",
        }
    )
    assert out == {
        "s": "solana",
        "b": True,
        "i": 3,
        "f": 1.5,
        "none": "None",
        "obj": "Point(2)",
        "raising": "<unprintable RaisingStr>",
        "bytes": "\ufffdok",
        "big": str(2**70),
        "ints": (1, 2, 3),
        "mixed_numbers": (1.0, 2.5),
        "mixed": ("1", "a", "None"),
        "bools": (True, False),
        "set": (7,),
        "empty": (),
        "7": "int key",
    }


def test_lone_surrogates_become_replacement_characters() -> None:
    """OTLP and the databases need UTF-8: what os.fsdecode makes of a bad byte is replaced."""
    bad = "pools-\udcff"
    assert sanitize({bad: bad, "seq": [bad, "ok"]}) == {
        "pools-\ufffd": "pools-\ufffd",
        "seq": ("pools-\ufffd", "ok"),
    }


def test_nested_mappings_flatten_then_json_encode() -> None:
    out = sanitize({"a": {"b": {"c": 1, "d": {"e": {"f": 2, "token": "t"}}}}})
    assert out == {"a.b.c": 1, "a.b.d.e": '{"f": 2, "token": "[REDACTED]"}'}


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "DB_PASSWORD",
        "api-key",
        "apiKey",
        "Authorization",
        "x.auth_token",
        "client_secret",
        "AWS Secret Access Key",
        "private.key",
        "session_cookie",
    ],
)
def test_credential_keys_are_redacted(key: str) -> None:
    assert sanitize({key: "hunter2"}) == {key: REDACTED}


def test_credentials_redacted_in_nested_and_sequences() -> None:
    out = sanitize({"credentials": {"user": "u", "pw": "p"}, "db": {"password": "p"}})
    assert out == {"credentials": REDACTED, "db.password": REDACTED}
    deep = sanitize({"a": {"b": {"c": {"d": [{"secret": "s", "ok": 1}]}}}})
    assert deep == {"a.b.c.d": ('{"secret": "[REDACTED]", "ok": 1}',)}
    listed = sanitize({"pools": [{"id": 1, "login": {"token": "t"}}, "plain"]})
    assert listed == {"pools": ('{"id": 1, "login": {"token": "[REDACTED]"}}', "plain")}
    assert sanitize({"auth": {"user": "u"}}) == {"auth": REDACTED}  # a credential key part


def test_url_passwords_masked() -> None:
    out = sanitize({"database": "postgresql://gecko:s3cr3t@db:5432/x", "url": "https://example/"})
    assert out == {
        "database": f"postgresql://gecko:{REDACTED}@db:5432/x",
        "url": "https://example/",
    }


def test_huge_values_truncated_and_entries_bounded() -> None:
    out = sanitize(
        {"huge": "x" * 1_000_000, "k" * 10_000: 1, "list": list(range(1000))},
        max_length=4096,
        max_entries=128,
    )
    assert len(out["huge"]) == 4096
    assert ("k" * 4096) in out
    assert len(out["list"]) == 128
    many = sanitize({f"k{i}": i for i in range(500)}, max_entries=128)
    assert len(many) == 128


def test_recursive_and_broken_mappings_are_not_fatal() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop

    class BrokenMapping(dict):  # type: ignore[type-arg]
        def items(self) -> Any:
            raise RuntimeError("broken")

    out = sanitize({"loop": loop, "broken": BrokenMapping(a=1)})
    assert out["loop.self.self.self"].startswith("{")
    assert out["broken"].startswith("{") or out["broken"].startswith("<")
    assert MetadataSanitizer().sanitize(BrokenMapping(a=1)) == {
        "_invalid": "<unreadable metadata: RuntimeError>"
    }


def test_hostile_metadata_through_a_real_run(captured: CapturedRuns) -> None:
    @gecko_otel.collection(
        "hostile",
        metadata={
            "api_key": "sk-live-123",
            "nested": {"network": "solana", "token": "tok-SECRET-xyz"},
            "obj": RaisingStr(),
            "none": None,
            "huge": "y" * 100_000,
        },
    )
    def collect() -> None:
        run = gecko_otel.current_run()
        assert run is not None
        run.set_metadata("password", "p")
        run.set_metadata("page", {"number": 3, "cursor": None})
        run.set_metadata("weird", RaisingStr())
        run.warn(RaisingStr())
        run.error("connect to postgresql://u:pw@host/db failed")

    collect()
    [record] = captured.runs
    [span] = captured.spans
    assert record.metadata["api_key"] == REDACTED
    assert record.metadata["nested.token"] == REDACTED
    assert record.metadata["nested.network"] == "solana"
    assert record.metadata["password"] == REDACTED
    assert record.metadata["page.number"] == 3
    assert record.metadata["page.cursor"] == "None"
    assert record.metadata["weird"] == "<unprintable RaisingStr>"
    assert len(record.metadata["huge"]) == 4096  # type: ignore[arg-type]
    assert record.warnings == ("<unprintable RaisingStr>",)
    assert record.errors == (f"connect to postgresql://u:{REDACTED}@host/db failed",)
    exported = str(dict(span.attributes)) + str([dict(e.attributes) for e in span.events])
    for secret in ("sk-live-123", "tok-SECRET-xyz", ":pw@"):
        assert secret not in exported
    assert span.attributes[semconv.METADATA_PREFIX + "api_key"] == REDACTED


def test_records_metadata_is_read_only_and_not_shared() -> None:
    with capture_runs(watchdog=False) as captured:

        @gecko_otel.collection("c", metadata={"network": "solana"})
        def collect() -> None:
            pass

        collect()
        collect()
        first, second = captured.runs
        with pytest.raises(TypeError):
            first.metadata["network"] = "eth"  # type: ignore[index]
        assert second.metadata["network"] == "solana"


def test_custom_sensitive_keys_and_lengths() -> None:
    config = MonitorConfig(sensitive_keys=("wallet",), max_attribute_length=5)
    with capture_runs(config) as local, track_collection("c", metadata={"wallet_addr": "0xabc"}):
        pass
    [record] = local.runs
    assert record.metadata == {"walle": REDACTED}  # key cut to 5, judged before the cut


@pytest.mark.parametrize(
    "key",
    [
        "privateKey",
        "accessKey",
        "sessionKey",
        "authHeader",
        "apiKey",
        "refresh_tokens",
        "HTTPToken",
        "AWSSecretKey",
        "APIKey",
    ],
)
def test_camel_case_and_plural_credential_keys(key: str) -> None:
    assert sanitize({key: "v"}) == {key: REDACTED}


@pytest.mark.parametrize("key", ["tokenizer", "max_tokenization", "secretary_name", "pool_id"])
def test_fragments_match_whole_words_only(key: str) -> None:
    assert sanitize({key: "v"}) == {key: "v"}


def test_set_metadata_limit_keeps_span_and_record_in_step() -> None:
    with capture_runs(MonitorConfig(max_metadata_entries=2)) as local:
        with track_collection("c", metadata={"a": 1}) as run:
            run.set_metadata("b", 2)
            run.set_metadata("c", 3)  # over the limit: neither record nor span
            run.set_metadata("a", 10)  # replacing an existing key is fine
        [record] = local.runs
        [span] = local.spans
    assert record.metadata == {"a": 10, "b": 2}
    on_span = {
        k.removeprefix(semconv.METADATA_PREFIX): v
        for k, v in span.attributes.items()
        if k.startswith(semconv.METADATA_PREFIX)
    }
    assert on_span == dict(record.metadata)


def test_exception_event_is_sanitised(captured: CapturedRuns) -> None:
    @gecko_otel.collection("db")
    def collect() -> None:
        raise ConnectionError("could not reach postgresql://gecko:hunter2@db:5432/x")

    with pytest.raises(ConnectionError):
        collect()
    [span] = captured.spans
    [event] = [e for e in span.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "ConnectionError"
    assert event.attributes["exception.escaped"] == "True"
    assert "hunter2" not in event.attributes["exception.message"]
    assert "hunter2" not in event.attributes["exception.stacktrace"]
    assert "raise ConnectionError" in event.attributes["exception.stacktrace"]
    assert "hunter2" not in (span.status.description or "")
