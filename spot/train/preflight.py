"""Check everything a run needs before it starts: the model is local or its remote store
answers, the vocabulary is there, every task's data are prepared (or can be fetched).

Each problem fails in seconds with one line that says what is missing and how to provide it,
instead of a run that sits for minutes on an unreachable gs:// checkpoint or dies after
compiling. Network checks are one TCP connection with a short timeout, remembered for a
minute, so a study grid's many runs do not repeat them.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from spot.config import RunConfig
from spot.errors import CheckpointError, ConfigError, DataError

PROBE_TIMEOUT_S = 3.0
_PROBES: dict[str, tuple[float, bool]] = {}
_HOSTS = {"gs": "storage.googleapis.com"}


def _connects(host: str, port: int = 443) -> bool:
    """One TCP connection to host:port within PROBE_TIMEOUT_S, name lookup included."""
    ok: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
                ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(PROBE_TIMEOUT_S + 0.5)  # getaddrinfo ignores the socket timeout
    return bool(ok)


def reachable(host: str) -> bool:
    """Whether `host` answers on 443 (remembered for 60 s)."""
    now = time.monotonic()
    hit = _PROBES.get(host)
    if hit is not None and now - hit[0] < 60:
        return hit[1]
    ok = _connects(host)
    _PROBES[host] = (now, ok)
    return ok


def _remote_host(url: str) -> str | None:
    scheme = url.split("://", 1)[0]
    return _HOSTS.get(scheme)


def check_model(config: RunConfig) -> None:
    from spot.model import checkpoints_hf as hf
    from spot.train.model_paths import EMBEDDED_MODEL, resolve_model_path

    m = config.model
    if m.random_weights or (m.name == EMBEDDED_MODEL and not m.checkpoint):
        return  # no checkpoint to read, or the offline backbone (built here on first use)
    path = resolve_model_path(m.name, m.checkpoint)
    what = f"model {m.name!r}" if path != m.name else "the model"
    if "://" in path:
        host = _remote_host(path)
        if host is None:
            raise CheckpointError(f"{what} is at {path}: only local paths, hub ids and gs:// "
                                  f"are supported; pass --model PATH")
        if not reachable(host):
            raise CheckpointError(
                f"{what} is at {path}, but {host} cannot be reached from this machine; copy "
                f"the checkpoint here (gsutil -m cp -r {path} DIR) and pass --model DIR "
                f"(or --model embedded for the offline backbone)")
        return
    local = Path(path).expanduser()
    if not local.exists() and not hf.looks_like_hub_id(path):
        raise CheckpointError(f"{what}: {local} does not exist; pass --model PATH (a "
                              f"checkpoint folder, hub id or preset)")


def check_vocab(config: RunConfig) -> None:
    from spot.data.vocab import DEFAULT_VOCAB
    from spot.train.model_paths import EMBEDDED_MODEL, VOCAB_FILES, resolve_model_path

    vocab = config.data.vocab
    if not vocab:
        m = config.model
        if m.random_weights or (m.name == EMBEDDED_MODEL and not m.checkpoint):
            return
        path = resolve_model_path(m.name, m.checkpoint)
        if "://" not in path and Path(path).is_dir() and any(
                (Path(path) / n).is_file() for n in VOCAB_FILES):
            return
        if "://" in path:
            return  # check_model has already judged the remote store
        if not Path(path).exists():
            return  # a hub model: its vocabulary is T5's, fetched with it
        vocab = DEFAULT_VOCAB
        how = (f"no vocabulary beside the checkpoint ({', '.join(VOCAB_FILES)}), so T5's "
               f"public one is needed")
    else:
        how = "data.vocab (--vocab)"
    if "://" in vocab:
        host = _remote_host(vocab)
        if host is not None and not reachable(host):
            raise DataError(f"{how}: {vocab} cannot be fetched ({host} is unreachable); copy "
                            f"it here and pass --vocab PATH")
        return
    if not Path(vocab).expanduser().is_file():
        raise DataError(f"{how}: {vocab} is not a file; pass --vocab PATH (a SentencePiece "
                        f"model)")


def check_data(config: RunConfig) -> None:
    from spot.data import registry, sources

    info = registry.get(config.task_or_mixture)
    for name in info.members:
        task = registry.get(name)
        if task.available():
            continue
        if task.source == "tfds":
            missing = sorted({n for parts in task._backend.d.parts.values() for n, _ in parts
                              if not sources.is_prepared(n)})
            if sources.downloads_allowed() and reachable(_HOSTS["gs"]):
                continue  # TFDS downloads and prepares it at the first read
            why = ("downloads are off (SPOT_TFDS_DOWNLOAD=0)" if not sources.downloads_allowed()
                   else "this machine cannot download it")
            build = " ".join(missing)
            raise DataError(f"task {name}: TFDS data {', '.join(missing)} are not prepared "
                            f"under {sources.tfds_data_dir()} and {why}; prepare them with "
                            f"`tfds build {build} --data_dir {sources.tfds_data_dir()}` "
                            f"(or set TFDS_DATA_DIR)")
        raise DataError(f"task {name}: its data are missing: expected {task.location()} (see "
                        f"docs/tasks.md)")


def preflight(config: RunConfig, *, model: bool = True, vocab: bool = True) -> None:
    """Everything a run needs, checked in seconds; the first problem raises a SpotError."""
    if not config.task_or_mixture:
        raise ConfigError("give exactly one of data.task (--task) or data.mixture (--mixture)")
    if model:
        check_model(config)
    if vocab:
        check_vocab(config)
    check_data(config)
