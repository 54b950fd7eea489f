"""Decoding in isolated worker processes.

decord can abort the whole process (C++ ``terminate``) or hang on some corrupt
files. Each file is decoded in a pebble worker with a per-file timeout: a
worker that dies or stalls costs that one file, pebble replaces it, and the
run goes on. Results come back in input order with a bounded number in flight.
Workers start from a forkserver (``_worker_context``), never as forks of the caller.
"""

from __future__ import annotations

import collections
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from xmodal.errors import XmodalError

DEFAULT_TIMEOUT_S = 120.0


def _worker_context(fn: Callable[[Any], Any]) -> Any:
    """Where workers start: a forkserver, a clean process started once, never a fork of this one.

    A fork copies the state of every thread of the caller without the threads: PyAV 18.1.1's
    per-thread swscale context (its own threads) froze the child that freed it, and pebble
    forks a crashed worker's replacement from its manager thread. The server preloads the
    decoders and ``fn``'s module, so a worker starts in milliseconds.
    """
    import multiprocessing

    if os.name != "posix":
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    module = getattr(fn, "__module__", None) or type(fn).__module__
    # Not "__main__" (the default): a caller's script without an `if __name__ == "__main__"`
    # guard would run again in the server. torch only where the caller has it (PyTorch views;
    # the ONNX Runtime path never imports it).
    preload = ["xmodal.data.video", __name__] + ([module] if module != "__main__" else [])
    context.set_forkserver_preload(preload + (["torch"] if "torch" in sys.modules else []))
    return context


def _init_worker() -> None:
    # Parallelism comes from the workers: one OpenMP and one decoder thread each.
    import faulthandler

    from xmodal.data.video import set_decoder_threads

    # The ONNX Runtime path never imports torch (start-up); where it comes later (the server
    # preloaded without it), it reads its thread count from here.
    os.environ["OMP_NUM_THREADS"] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    set_decoder_threads(1)
    # A decoder crash is reported by the parent as one line; a C-level stack dump (from
    # PYTHONFAULTHANDLER, say) is noise.
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

    ``fn`` must be picklable by reference from a fresh process: a module-level function, or
    an instance of a module-level class, of an importable module (not the script being run).
    Workers see the environment and standard streams of the first pool's time (the server's).
    ``error`` is a one-line reason or None.
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
        from concurrent.futures import TimeoutError as FutureTimeout

        from pebble import ProcessExpired, ProcessPool

        context = _worker_context(self.fn)
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
        except BrokenProcessPool as exc:  # no worker could start: every file would fail
            raise XmodalError(
                f"decode workers could not start ({exc}): a script that runs xmodal with workers "
                "must keep that code under `if __name__ == \"__main__\":` (each worker process "
                "imports the script), or use workers=0") from exc
        except Exception as exc:  # e.g. a result that cannot be pickled back
            return index, None, f"worker failed ({type(exc).__name__}: {exc})"
        return index, result, error
