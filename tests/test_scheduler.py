"""The step scheduler that runs the registrars of a connection on a few threads (a unit of
logic: plain callables, real threads and clocks, no etcd)."""

from __future__ import annotations

import threading
import time

import pytest

from hprose_cluster.scheduler import StepScheduler

from tests.support.cluster_procs import wait_until

pytestmark = pytest.mark.timeout(30)


def workers(scheduler: StepScheduler) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("hprose-cluster-%s-" % scheduler.name)]


def test_steps_repeat_after_the_delay_they_return() -> None:
    scheduler = StepScheduler("test-repeat")
    runs: list[float] = []

    def step() -> float:
        runs.append(time.monotonic())
        return 0.1

    task = scheduler.add(step, "t")
    assert wait_until(lambda: len(runs) >= 4, 5)
    scheduler.remove(task)
    gaps = [b - a for a, b in zip(runs, runs[1:])]
    assert all(gap >= 0.09 for gap in gaps), gaps


def test_wake_runs_a_step_early_and_after_a_run_in_progress() -> None:
    scheduler = StepScheduler("test-wake")
    runs: list[float] = []
    inside = threading.Event()
    release = threading.Event()

    def step() -> float:
        runs.append(time.monotonic())
        if len(runs) == 2:
            inside.set()
            release.wait(5)
        return 60.0

    task = scheduler.add(step, "t")
    assert wait_until(lambda: len(runs) == 1, 5)
    scheduler.wake(task)  # long before its 60 s
    assert wait_until(inside.is_set, 5)
    scheduler.wake(task)  # while it runs: once more right after
    release.set()
    assert wait_until(lambda: len(runs) == 3, 5)
    time.sleep(0.2)
    assert len(runs) == 3  # and then back to its own delay
    scheduler.remove(task)


def test_a_step_never_runs_twice_at_once_and_workers_are_bounded() -> None:
    scheduler = StepScheduler("test-bound", max_workers=3)
    lock = threading.Lock()
    running: dict[int, int] = {}
    overlap: list[int] = []
    busiest = [0]

    def make(index: int):  # type: ignore[no-untyped-def]
        def step() -> float:
            with lock:
                running[index] = running.get(index, 0) + 1
                if running[index] > 1:
                    overlap.append(index)
                busiest[0] = max(busiest[0], sum(running.values()))
            time.sleep(0.002)
            with lock:
                running[index] -= 1
            return 0.0
        return step

    tasks = [scheduler.add(make(i), "t%d" % i) for i in range(20)]
    for _ in range(50):
        for task in tasks:
            scheduler.wake(task)
    time.sleep(0.5)
    assert len(workers(scheduler)) <= 3
    for task in tasks:
        scheduler.remove(task)
    assert not overlap
    assert 1 <= busiest[0] <= 3


def test_remove_waits_for_the_run_in_progress_and_the_last_removal_ends_the_workers() -> None:
    scheduler = StepScheduler("test-remove")
    inside = threading.Event()
    done = []

    def step() -> float:
        inside.set()
        time.sleep(0.3)
        done.append(1)
        return 0.0

    task = scheduler.add(step, "t")
    assert wait_until(inside.is_set, 5)
    assert scheduler.remove(task, timeout=5)
    assert done == [1]  # remove() returned after the step ended ...
    time.sleep(0.1)
    assert done == [1]  # ... and it never ran again
    assert workers(scheduler) == []


def test_remove_gives_up_after_its_timeout() -> None:
    scheduler = StepScheduler("test-timeout")
    release, inside = threading.Event(), threading.Event()
    task = scheduler.add(lambda: (inside.set(), release.wait(5)) and None, "t")
    # the step must be running when remove() is called (a fixed 0.1 s sleep could end before
    # a starved worker started it; remove() then had nothing to wait for and returned True)
    assert wait_until(inside.is_set, 5)
    started = time.monotonic()
    assert scheduler.remove(task, timeout=0.2) is False
    assert time.monotonic() - started < 2
    release.set()
    assert wait_until(lambda: workers(scheduler) == [], 5)


def test_a_failing_step_is_logged_and_retried_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    scheduler = StepScheduler("test-fail")
    calls = []

    def step() -> float:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return 0.0

    task = scheduler.add(step, "flaky")
    assert wait_until(lambda: len(calls) >= 2, 5)  # retried after its 1 s pause
    scheduler.remove(task)
    assert any("step of flaky failed" in r.getMessage() for r in caplog.records)


def test_a_step_returning_none_stops_and_a_new_task_after_the_last_gets_a_worker() -> None:
    scheduler = StepScheduler("test-none")
    calls = []
    first = scheduler.add(lambda: calls.append("a") and None, "a")
    assert wait_until(lambda: calls == ["a"], 5)
    scheduler.remove(first)
    assert wait_until(lambda: workers(scheduler) == [], 5)
    second = scheduler.add(lambda: calls.append("b") and None, "b")
    assert wait_until(lambda: calls == ["a", "b"], 5)
    scheduler.remove(second)
