"""How the engine reports progress without printing.

The engine only talks to a ``Reporter``; the CLI passes one that draws tqdm
bars, the Python API gets the silent default, so both share one code path.
Messages pass through ``xmodal.names.display``: a file name that is not UTF-8
must not crash a terminal or a log.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from typing import TypeVar

from xmodal.names import display

T = TypeVar("T")

log = logging.getLogger("xmodal")


class Reporter:
    """Silent reporter: messages go to the ``xmodal`` logger, bars are not drawn."""

    def track(self, items: Iterable[T], *, total: int | None = None, desc: str = "") -> Iterator[T]:
        yield from items

    def info(self, message: str) -> None:
        log.info(display(message))

    def warning(self, message: str) -> None:
        log.warning(display(message))

    def printing(self) -> contextlib.AbstractContextManager[None]:
        """Wrap output printed while a bar runs, so lines and bar do not interleave."""
        return contextlib.nullcontext()


class TqdmReporter(Reporter):
    """Progress bars on stderr (rate and ETA included) and messages above them."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet

    def track(self, items: Iterable[T], *, total: int | None = None, desc: str = "") -> Iterator[T]:
        from tqdm import tqdm

        bar = tqdm(items, total=total, desc=desc, disable=self.quiet, leave=False,
                   dynamic_ncols=True, mininterval=0.5)
        try:
            yield from bar
        finally:
            bar.close()

    def info(self, message: str) -> None:
        from tqdm import tqdm

        if not self.quiet:
            tqdm.write(display(message))

    def warning(self, message: str) -> None:
        import sys

        from tqdm import tqdm

        tqdm.write(f"warning: {display(message)}", file=sys.stderr)

    def printing(self) -> contextlib.AbstractContextManager[None]:
        from tqdm import tqdm

        # Clears the bars, lets the caller print (stdout or stderr), redraws them.
        return tqdm.external_write_mode()


class StderrReporter(Reporter):
    """Messages on stderr, one line each: notes that must not mix with records on stdout."""

    def info(self, message: str) -> None:
        import sys

        print(f"xmodal: {message}", file=sys.stderr, flush=True)

    def warning(self, message: str) -> None:
        import sys

        print(f"xmodal: warning: {message}", file=sys.stderr, flush=True)
