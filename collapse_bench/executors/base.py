"""What every executor shares: the contract's types (`CellError`), the one retry policy, the feed of cells
(a list or a lazy iterable, with retries first) and the serial executor.

The contract: `map(fn, specs, on_result, *, on_start=None, on_step=None, on_failure=None)`. `fn(spec, on_step)`
is a picklable top-level function; its second positional argument is a step callback `(step, total) -> None`
or None; it returns a picklable result and never raises for a failure inside the cell. Executors treat specs
and results as opaque. They call `on_start(spec)`, `on_step(spec, step, total)`, `on_result(spec, result)`,
and, when a cell could not run (its worker died, something raised outside the cell's own failure handling)
after the retries, `on_failure(spec, CellError)`; the caller turns that into a failed record."""
from __future__ import annotations

import functools
import logging
import traceback
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Iterator

log = logging.getLogger("collapse_bench.executors")

CellFn = Callable[[Any, "Callable[[int, int], None] | None"], Any]
OnResult = Callable[[Any, Any], None]
OnFailure = Callable[[Any, "CellError"], None]


class ExecutorError(ValueError):
    """A configuration problem of the executor (the CLI prints it as `error: ...`)."""


@dataclass(frozen=True)
class CellError:
    """Why a cell produced no result: `type` names the cause (`WorkerDied`, or the exception's class)."""
    type: str
    message: str
    traceback: str = ""
    attempts: int = 1

    @classmethod
    def from_exception(cls, e: BaseException, tb: str | None = None) -> "CellError":
        text = tb if tb is not None else "".join(traceback.format_exception(e))
        return cls(type(e).__name__, str(e), text)


class CellFailed(RuntimeError):
    """Raised by `map` for a failed cell when the caller passed no `on_failure`."""

    def __init__(self, spec: Any, error: CellError):
        super().__init__(f"cell {spec!r} failed after {error.attempts} attempt(s): {error.type}: {error.message}")
        self.spec, self.error = spec, error


@dataclass(frozen=True)
class RetryPolicy:
    """A cell whose run failed outside the cell is run again up to `retries` more times, then reported failed."""
    retries: int = 0

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ExecutorError(f"--retries must be >= 0, got {self.retries}")

    def should_retry(self, attempt: int) -> bool:
        return attempt <= self.retries


@dataclass(frozen=True)
class Task:
    spec: Any
    attempt: int = 1


class Feed:
    """The cells still to run: retries first, then the input, pulled one at a time (a lazy iterable is only
    advanced when the executor has room for another cell)."""

    def __init__(self, specs: Iterable, policy: RetryPolicy):
        self._source: Iterator = iter(specs)
        self._retries: deque[Task] = deque()
        self.policy = policy

    def next(self) -> Task | None:
        if self._retries:
            return self._retries.popleft()
        try:
            return Task(next(self._source))
        except StopIteration:
            return None

    def settle(self, task: Task, result: Any, error: CellError | None, on_result: OnResult,
               on_failure: OnFailure | None) -> None:
        """A finished run: its result to `on_result`, or its error to the retry-or-fail decision."""
        if error is None:
            on_result(task.spec, result)
        else:
            self.fail(task, error, on_failure)

    def fail(self, task: Task, error: CellError, on_failure: OnFailure | None) -> None:
        """The one retry-or-fail decision of every executor."""
        if self.policy.should_retry(task.attempt):
            log.warning("attempt %d of %r failed (%s: %s); retrying", task.attempt, task.spec, error.type,
                        error.message)
            self._retries.append(Task(task.spec, task.attempt + 1))
            return
        error = replace(error, attempts=task.attempt)
        if on_failure is None:
            raise CellFailed(task.spec, error)
        on_failure(task.spec, error)


class SerialExecutor:
    """Runs cells one after another in this process (one cell, debugging, most tests)."""

    def __init__(self, retries: int = 0):
        self.policy = RetryPolicy(retries)

    def map(self, fn: CellFn, specs: Iterable, on_result: OnResult, *,
            on_start: Callable[[Any], None] | None = None, on_step: Callable[[Any, int, int], None] | None = None,
            on_failure: OnFailure | None = None) -> None:
        feed = Feed(specs, self.policy)
        while (task := feed.next()) is not None:
            if on_start and task.attempt == 1:
                on_start(task.spec)
            try:
                result = fn(task.spec, functools.partial(on_step, task.spec) if on_step else None)
            except Exception as e:  # noqa: BLE001 - reported like a worker's failure; Ctrl-C still stops the run
                feed.fail(task, CellError.from_exception(e), on_failure)
                continue
            on_result(task.spec, result)
