"""Guarantee: whatever metadata a collector passes, sanitising it is bounded and safe.

- Work is bounded by the output, not by the paths through the input: shared
  references (``a=[a, a]``, ``d={"a": d, "b": d}``) used to take exponential
  time on the collector's thread (depth 20: 5.6 s, doubling per level).
- Credentials are redacted by key part, so ``api_key_id``, ``privateKey`` and
  the keys a crypto collector handles (``mnemonic``, ``seed_phrase``...) are.
- The sanitizer's cache of judged keys never keeps long keys alive (200
  distinct 1 MB keys used to keep 193 MB; the test uses 20).
"""

from __future__ import annotations

from typing import Any

import pytest

import gecko_otel
from gecko_otel._capture.metadata import REDACTED, MetadataSanitizer
from gecko_otel.testing import CapturedRuns


class TooMuchWork(BaseException):
    """Raised past any sane amount of work (a BaseException: the sanitizer's own
    fallbacks, which catch Exception, let it through)."""


def shared_list(depth: int) -> list[Any]:
    value: list[Any] = [1]
    for _ in range(depth):
        value = [value, value]
    return value


def cyclic_list() -> list[Any]:
    a: list[Any] = []
    a.extend([a, a])
    return a


def cyclic_dict() -> dict[str, Any]:
    d: dict[str, Any] = {}
    d["a"] = d
    d["b"] = d
    return d


@pytest.mark.parametrize(
    "make", [cyclic_list, cyclic_dict, lambda: shared_list(64)], ids=["list", "dict", "dag"]
)
def test_work_is_bounded_by_the_output(monkeypatch: pytest.MonkeyPatch, make: Any) -> None:
    sanitizer = MetadataSanitizer(max_length=1000)
    copied = 0
    redacted = MetadataSanitizer._redacted

    def counting(self: MetadataSanitizer, *args: Any) -> object:
        nonlocal copied
        copied += 1
        if copied > 100_000:
            raise TooMuchWork  # unbounded: stop here instead of running for ever
        return redacted(self, *args)

    monkeypatch.setattr(MetadataSanitizer, "_redacted", counting)
    value = make()
    try:
        out = sanitizer.sanitize({"v": value, "many": [value] * 128, "nested": {"k": value}})
    except TooMuchWork:
        pytest.fail(f"sanitising copied more than {copied - 1} values")
    assert out  # something useful came out
    assert copied <= 4 * 1000 + 300  # the call's budget, plus one "..." per container cut


def test_shared_metadata_through_a_real_run(captured: CapturedRuns) -> None:
    value = shared_list(40)
    with gecko_otel.track_collection("shared", metadata={"tree": value}) as run:
        run.set_metadata("again", {"a": value, "b": value})
    [record] = captured.runs_of("shared")
    assert isinstance(record.metadata["tree"], tuple)
    texts = [t for v in record.metadata.values() for t in (v if isinstance(v, tuple) else (v,))]
    assert all(len(str(t)) <= 4096 for t in texts)


SECRETS = [
    "password",
    "api_key_id",
    "privateKey",
    "private_key",
    "x-api-key",
    "mnemonic",
    "wallet_mnemonic",
    "seed_phrase",
    "passphrase",
    "Authorization",
    "bearer",
    "db_dsn",
    "jwt",
    "session",
    "sessionId",
    "auth",
    "auth_header",
    "refresh_tokens",
]
NOT_SECRETS = ["tokenizer", "author", "network", "pool_address", "authored_by"]


@pytest.mark.parametrize("key", SECRETS)
def test_credential_keys_are_redacted_by_part(key: str) -> None:
    assert MetadataSanitizer().sanitize({key: "s3cret"}) == {key: REDACTED}


@pytest.mark.parametrize("key", NOT_SECRETS)
def test_ordinary_keys_are_kept(key: str) -> None:
    assert MetadataSanitizer().sanitize({key: "value"}) == {key: "value"}


def test_long_keys_are_judged_but_not_kept() -> None:
    sanitizer = MetadataSanitizer(max_length=64)
    for i in range(20):
        key = f"{i}-" + "k" * 1_000_000
        out = sanitizer.sanitize({key: 1})
        assert list(out.values()) == [1]
    assert sanitizer.sanitize({"x" * 1_000_000 + "_token": "t"}) == {"x" * 64: REDACTED}
    assert sum(len(k) for k in sanitizer._judged) < 100_000
