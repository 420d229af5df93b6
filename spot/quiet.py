"""TensorFlow without its start-up noise.

spot computes with JAX; TensorFlow only reads data (TFDS, seqio, SentencePiece through
seqio) and writes TensorBoard summaries, always on the CPU. On a machine without CUDA, its
import and first device probe print lines such as `E0000 ... failed call to cuInit` straight
to the process's stderr (file descriptor 2, below Python), in the middle of spot's output.
None of them is an error for spot. `import_tensorflow()` and `import_seqio()` import the
library once with descriptor 2 captured, then write back every captured line except those
known start-up notices, so a real problem still shows.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from typing import Iterator

# Start-up notices TensorFlow prints on CPU-only machines; none matters to spot.
_NOTICES = re.compile("|".join((
    r"All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    r"cudart_stub\.cc.*Could not find cuda drivers on your machine",
    r"failed call to cuInit",
    r"cpu_feature_guard\.cc.*This TensorFlow binary is optimized",
    r"^To enable the following instructions: .* rebuild TensorFlow",
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"computation placer already registered",
    r"oneDNN custom operations are on",
)))
_LOCK = threading.Lock()
_done: set[str] = set()


def noise(line: str) -> bool:
    """Whether a stderr line is one of TensorFlow's harmless CPU start-up notices."""
    return bool(_NOTICES.search(line))


@contextlib.contextmanager
def _filtered_stderr() -> Iterator[None]:
    """Capture file descriptor 2 for the block; afterwards re-emit all but the notices."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real descriptor (a notebook, a pipe object)
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines() if line.strip() and not noise(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()


def _quiet_import(name: str):
    import importlib

    with _LOCK:
        if name in _done:
            return sys.modules[name]
        with _filtered_stderr():
            if "tensorflow" not in _done:
                os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # a user's own level wins
                tf = importlib.import_module("tensorflow")
                tf.config.list_physical_devices()  # the CUDA probe runs now, inside the filter
                _done.add("tensorflow")
            module = importlib.import_module(name)
        _done.add(name)
        return module


def import_tensorflow():
    """`import tensorflow`, quietly (see the module docstring)."""
    return _quiet_import("tensorflow")


def import_seqio():
    """`import seqio` (which imports TensorFlow), quietly."""
    return _quiet_import("seqio")
