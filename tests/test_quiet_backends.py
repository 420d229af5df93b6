"""A CPU user sees no TensorFlow start-up notice dressed as an error (`E0000 ... cuInit`), yet a
real message written to stderr while TensorFlow loads still shows."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from spot.quiet import noise

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=240, cwd=ROOT)


def test_vocabulary_and_tensorflow_use_print_no_startup_notice(vocab_path):
    # The path the demo and every training run take: seqio's vocabulary, then a TF op. Without
    # CUDA this is where the notices appeared; with a device none is printed either way.
    proc = _run(f"""
        from spot.data.vocab import load_vocabulary
        vocab = load_vocabulary({str(vocab_path)!r})
        print(vocab.encode("a quiet start"))
        from spot.quiet import import_tensorflow
        tf = import_tensorflow()
        print(int(tf.reduce_sum(tf.constant([1, 2]))))
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[1] == "3"
    assert "cuInit" not in proc.stderr and "E0000" not in proc.stderr, proc.stderr
    assert "cudart_stub" not in proc.stderr, proc.stderr


def test_other_stderr_output_during_the_import_still_shows():
    # A message on descriptor 2 while TensorFlow loads (as a real import problem would
    # print) is written back after the import, not swallowed.
    proc = _run("""
        import importlib, os
        import spot.quiet as q
        real = importlib.import_module
        def noisy(name, *args, **kwargs):
            if name == "tensorflow":
                os.write(2, b"W real problem: something is wrong\\n")
            return real(name, *args, **kwargs)
        importlib.import_module = noisy
        q.import_tensorflow()
    """)
    assert proc.returncode == 0, proc.stderr
    assert "W real problem: something is wrong" in proc.stderr


def test_noise_patterns_are_narrow():
    assert noise("E0000 00:00:1 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error")
    assert noise("I0000 00:00:1 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
                 "GPU will not be used.")
    assert not noise("E0000 00:00:1 some_op.cc:1] Invalid argument: a real error")
    assert not noise("Traceback (most recent call last):")
