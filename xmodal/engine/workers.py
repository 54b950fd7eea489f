"""Decoding in isolated worker processes.

decord can abort the whole process (C++ ``terminate``) or hang on some corrupt
files. Each file is decoded in a pebble worker with a per-file timeout: a
worker that dies or stalls costs that one file, pebble replaces it, and the
run goes on. Results come back in input order with a bounded number in flight.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

DEFAULT_TIMEOUT_S = 120.0


def _init_worker() -> None:
    # A forked child must not enter the parent's OpenMP pool (it would deadlock,
    # as DataLoader workers also avoid); parallelism comes from the workers.
    import faulthandler
    import sys

    from xmodal.data.video import set_decoder_threads

    # Only if the parent uses torch: the ONNX Runtime path never imports it (start-up).
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    set_decoder_threads(1)
    # A decoder crash is reported by the parent as one line; a C-level stack dump
    # inherited from the parent's faulthandler (pytest enables one) is noise.
    faulthandler.disable()


def _describe_crash(exc: BaseException) -> str:
    code = getattr(exc, "exitcode", None)
    if isinstance(code, int) and code < 0:
        try:
            import signal

            return f"the decoder crashed ({signal.Signals(-code).name})"
        except ValueError:
            pass
    return f"the decoder crashed (exit code {code})" if code is not None else (
        f"the decoder crashed ({exc})")


class DecodePool:
    """Maps ``fn`` over items, yielding ``(index, result, error)`` in order.

    ``fn`` must be picklable. ``error`` is a one-line reason or None.
    ``workers=0`` decodes in this process (no isolation; for a few files, where
    starting processes costs more than it saves).
    """

    def __init__(self, fn: Callable[[Any], Any], *, workers: int = 2,
                 timeout_s: float | None = DEFAULT_TIMEOUT_S, in_flight: int | None = None,
                 error_types: tuple[type[BaseException], ...] = (Exception,),
                 describe_error: Callable[[BaseException], str] = str) -> None:
        self.fn = fn
        self.workers = max(0, workers)
        self.timeout_s = timeout_s
        self.in_flight = in_flight or max(2, 4 * self.workers)
        self.error_types = error_types
        self.describe_error = describe_error

    def imap(self, items: Iterable[Any]) -> Iterator[tuple[int, Any, str | None]]:
        if self.workers == 0:
            yield from self._inline(items)
        else:
            yield from self._isolated(items)

    def _call(self, item: Any) -> tuple[Any, str | None]:
        try:
            return self.fn(item), None
        except self.error_types as exc:
            return None, self.describe_error(exc)

    def _inline(self, items: Iterable[Any]) -> Iterator[tuple[int, Any, str | None]]:
        for index, item in enumerate(items):
            result, error = self._call(item)
            yield index, result, error

    def _isolated(self, items: Iterable[Any]) -> Iterator[tuple[int, Any, str | None]]:
        import multiprocessing
        from concurrent.futures import TimeoutError as FutureTimeout

        from pebble import ProcessExpired, ProcessPool

        context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        pending: collections.deque = collections.deque()
        iterator = enumerate(items)
        with ProcessPool(max_workers=self.workers, initializer=_init_worker,
                         context=context) as pool:
            try:
                for index, item in iterator:
                    pending.append((index, pool.schedule(self._call, args=(item,),
                                                         timeout=self.timeout_s)))
                    if len(pending) >= self.in_flight:
                        yield self._collect(*pending.popleft(), FutureTimeout, ProcessExpired)
                while pending:
                    yield self._collect(*pending.popleft(), FutureTimeout, ProcessExpired)
            finally:
                for _, future in pending:
                    future.cancel()
                pool.stop()
                pool.join()

    def _collect(self, index: int, future: Any, timeout_type: type,
                 expired_type: type) -> tuple[int, Any, str | None]:
        try:
            result, error = future.result()
        except timeout_type:
            return index, None, f"decoding took longer than {self.timeout_s:g}s (stopped)"
        except expired_type as exc:
            return index, None, _describe_crash(exc)
        except Exception as exc:  # e.g. a result that cannot be pickled back
            return index, None, f"worker failed ({type(exc).__name__}: {exc})"
        return index, result, error
