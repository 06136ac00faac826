"""One log format for both processes of the bridge (the ingress and the store process)."""

from __future__ import annotations

import collections
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO


class KeyValueFormatter(logging.Formatter):
    """One line per event: `ts level logger message` (message ids are in the messages)."""

    _second = -1
    _stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # a few lines per message at info: format each second once
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        line = f"{self._stamp}.{int(record.msecs):03d}Z {record.levelname.lower()} " \
               f"{record.name} {record.getMessage()}"
        if record.exc_info:
            line += " | " + self.formatException(record.exc_info).replace("\n", " | ")
        return line


class LineWriter(logging.Handler):
    """Writes log lines off the event loop: `emit` only appends the record, and wakes the
    writer thread when it sleeps; the thread lets lines gather for `GATHER_S`, then formats
    them and writes them with one write and one flush. Under load that is one system call and
    one wake-up for many lines, where a StreamHandler makes two calls per line and a queue
    handed over line by line wakes the thread (and makes it take the interpreter's lock) as
    often; idle, a line is written within `GATHER_S`. The arguments of a record are formatted
    late, in the thread: log immutable values (as the bridge does)."""

    _STOP = None
    GATHER_S = 0.02

    def __init__(self, stream: TextIO, formatter: logging.Formatter) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self._stream = stream
        self._records: collections.deque[logging.LogRecord | None] = collections.deque()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        self._records.append(record)
        if not self._wake.is_set():
            self._wake.set()

    def _run(self) -> None:
        pending, wake = self._records, self._wake
        while True:
            wake.wait()
            if pending and pending[-1] is not self._STOP:
                time.sleep(self.GATHER_S)
            wake.clear()  # before draining: a line appended from here on wakes it again
            batch = [pending.popleft() for _ in range(len(pending))]
            records = [r for r in batch if r is not self._STOP]
            lines = [line for line in map(self._line, records) if line is not None]
            if lines:
                try:
                    self._stream.write("\n".join(lines) + "\n")
                    self._stream.flush()
                except Exception:  # a closed or full stream: the bridge goes on without logs
                    self.handleError(records[0])
            if len(records) < len(batch):
                return

    def _line(self, record: logging.LogRecord) -> str | None:
        try:
            return self.format(record)
        except Exception:
            self.handleError(record)
            return None

    def close(self) -> None:
        """What was logged is written before the process ends (logging.shutdown at exit)."""
        if self._thread.is_alive():
            self._records.append(self._STOP)
            self._wake.set()
            self._thread.join(5.0)
        super().close()


def setup_logging(level: str | int, stream: TextIO | None = None) -> None:
    """The bridge's one log format on standard error (or `stream`), written off the loop.
    Records skip what the format never shows (the logging HOWTO's "Optimization"): the
    caller's file and line, found by walking the stack for every record, and the thread and
    process names."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, LineWriter):
            old.close()
    root.handlers[:] = [LineWriter(stream if stream is not None else sys.stderr,
                                   KeyValueFormatter())]
    root.setLevel(level.upper() if isinstance(level, str) else level)


class Episode:
    """One trouble logged as an episode, not once per occurrence: the first failure is logged
    with its reason, then only a summary every `summary_s` while it lasts, and one line when it
    ends (the first success `settle_s` after the last failure). A full disk or a sick SMSC fails thousands of operations a minute; each one logged
    (with a traceback) fills the disk the log shares and buries the one line that matters.
    `clock` is monotonic seconds (injected in tests)."""

    def __init__(self, log: logging.Logger, what: str, *, summary_s: float = 60.0,
                 settle_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.what = what
        self.summary_s = summary_s
        #: A success ends the episode only this long after the last failure: a flapping
        #: store (a disk with a little room now and then) stays one episode.
        self.settle_s = settle_s
        self.clock = clock
        self.active = False
        self.failures = 0  # in this episode
        self._since = 0.0
        self._reported = 0  # failures covered by the lines written so far
        self._last_line = 0.0
        self._last_failure = 0.0
        self._last_reason = ""

    def failed(self, reason: str) -> None:
        """One more failure; logs only when the episode starts or a summary is due."""
        now = self.clock()
        self.failures += 1
        self._last_reason = reason
        self._last_failure = now
        if not self.active:
            self.active = True
            self._since = self._last_line = now
            self._reported = self.failures
            self.log.error("%s failing: %s", self.what, reason)
        elif now - self._last_line >= self.summary_s:
            self.log.error("%s still failing: %d failures in %.0f s (last: %s)", self.what,
                           self.failures - self._reported, now - self._last_line, reason)
            self._last_line = now
            self._reported = self.failures

    def succeeded(self) -> None:
        """A success: the trouble is over once none failed for `settle_s` (a no-op when
        there was none)."""
        if not self.active:
            return
        now = self.clock()
        if now - self._last_failure < self.settle_s:
            return
        self.log.warning("%s succeed again after %d failure(s) over %.1f s (last: %s)",
                         self.what, self.failures, now - self._since, self._last_reason)
        self.active = False
        self.failures = 0
