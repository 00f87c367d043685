"""The helpers several parts of the package share (neuro_api._shared)."""

from __future__ import annotations

import math

import pytest
import trio

from neuro_api._shared import (
    StatusCallback,
    exponential_delay,
    find_exception,
    first_leaf,
    leaves,
)


def nested() -> BaseExceptionGroup[BaseException]:
    inner = ExceptionGroup("inner", [KeyError("k"), OSError("os")])
    return BaseExceptionGroup("outer", [inner, ValueError("v")])


def test_leaves_unwrap_groups_at_any_depth() -> None:
    found = list(leaves(nested()))
    assert [type(e) for e in found] == [KeyError, OSError, ValueError]
    assert next(leaves(ValueError("alone"))).args == ("alone",)
    assert isinstance(first_leaf(nested()), KeyError)
    plain = ValueError("x")
    assert first_leaf(plain) is plain


def test_find_exception_looks_through_groups_and_causes() -> None:
    root = OSError("address in use")
    try:
        try:
            raise root
        except OSError as exc:
            raise RuntimeError("start failed") from exc
    except RuntimeError as wrapped:
        group = ExceptionGroup("nursery", [KeyError("k"), wrapped])
    assert find_exception(group, OSError) is root
    assert find_exception(group, ZeroDivisionError) is None
    assert find_exception(None, OSError) is None


def test_exponential_delay() -> None:
    delays = [exponential_delay(n, initial=0.5, maximum=30.0) for n in range(8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    # No overflow however many attempts, and never above the maximum.
    assert exponential_delay(10**6, initial=0.5, maximum=30.0, factor=3.0) == 30.0
    assert exponential_delay(5, initial=0.0, maximum=30.0) == 0.0
    jittered = exponential_delay(0, initial=1.0, maximum=5.0, jitter=0.2, rand=0.5)
    assert math.isclose(jittered, 0.9)


async def test_status_callback_hands_the_value_on(nursery: trio.Nursery) -> None:
    seen: list[object] = []

    async def task(*, task_status: trio.TaskStatus[int]) -> None:
        task_status.started(42)

    await task(task_status=StatusCallback(seen.append))
    assert seen == [42]


@pytest.mark.parametrize(
    ("failures", "expected"), [(1, 0.5), (2, 1.0), (3, 2.0), (100, 30.0)]
)
def test_the_supervisors_backoff_is_the_same_rule(
    failures: int, expected: float
) -> None:
    from neuro_api.supervisor._supervisor import backoff_delay  # noqa: PLC0415

    assert backoff_delay(failures, 0.5, 30.0, 0.0, 0.0) == expected


def test_the_supervisors_backoff_keeps_its_exponent_cap() -> None:
    from neuro_api.supervisor._supervisor import backoff_delay  # noqa: PLC0415

    # An unbounded maximum still gives a finite delay, as before.
    assert backoff_delay(10_000, 0.5, math.inf, 0.0, 0.0) == 0.5 * 2.0**64
