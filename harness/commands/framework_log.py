"""Frameworks' own log lines (TensorFlow's absl/CUDA messages, Ray's warnings) go to a log file, not the
terminal, for commands that import a framework in the harness's own process (`harness convert`).

The C++ side of TensorFlow writes to file descriptor 2 directly, so redirecting ``sys.stderr`` is not enough:
the descriptor itself is pointed at the log while the block runs, and the harness's own messages, printed to
stdout or after the block, stay on the terminal. Jobs need none of this: each worker's stderr already goes
to ``logs/<job>.log``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Iterator


def log_path(command: str) -> Path:
    """``$HARNESS_CACHE/logs/<command>-<timestamp>.log``."""
    from harness.data.assets.places import cache_dir

    folder = cache_dir() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


@contextlib.contextmanager
def framework_output_to(path: Path) -> Iterator[Path]:
    """File descriptor 2 (and ``sys.stderr``) into ``path`` while the block runs."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield path
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
