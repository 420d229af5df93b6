"""Reading raw examples from TFDS through seqio, and telling whether they are here at all.

Availability is a file-system check on the prepared TFDS folder
(`$TFDS_DATA_DIR/<name>/<config>/<version>/dataset_info.json`), so listing 60 tasks never
imports TensorFlow or touches the network. Reading goes through `seqio.TfdsDataSource`;
with `download=False` it reads only what is prepared (TFDS's read-only path) and says how
to prepare the rest.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from spot.errors import DataError


def tfds_data_dir() -> Path:
    return Path(os.environ.get("TFDS_DATA_DIR") or Path.home() / "tensorflow_datasets")


def downloads_allowed() -> bool:
    """Whether training may let TFDS download and prepare a missing dataset
    (SPOT_TFDS_DOWNLOAD=0 forbids it, e.g. on air-gapped machines)."""
    return os.environ.get("SPOT_TFDS_DOWNLOAD", "1").lower() not in ("0", "false", "no")


def split_name_version(tfds_name: str) -> tuple[str, str | None]:
    name, _, version = tfds_name.partition(":")
    return name, version or None


def prepared_dir(tfds_name: str) -> Path:
    name, version = split_name_version(tfds_name)
    path = tfds_data_dir().joinpath(*name.split("/"))
    return path / version if version else path


def is_prepared(tfds_name: str) -> bool:
    return (prepared_dir(tfds_name) / "dataset_info.json").is_file()


@lru_cache(maxsize=512)
def _split_sizes(info_path: str, mtime: float) -> dict[str, int]:
    with open(info_path, encoding="utf-8") as f:
        info = json.load(f)
    sizes = {}
    for s in info.get("splits", []):
        lengths = s.get("shardLengths") or []
        n = sum(int(x) for x in lengths)
        if not lengths and "statistics" in s:
            n = int(s["statistics"].get("numExamples", 0))
        sizes[s.get("name", "")] = n
    return sizes


def prepared_num_examples(tfds_name: str, tfds_split: str) -> int | None:
    """The split size recorded in a prepared dataset's info, or None when not prepared."""
    info = prepared_dir(tfds_name) / "dataset_info.json"
    try:
        sizes = _split_sizes(str(info), info.stat().st_mtime)
    except (OSError, ValueError):
        return None
    return sizes.get(tfds_split)


def iter_tfds(tfds_name: str, tfds_split: str, *, download: bool,
              shuffle_files: bool = False, seed: int = 0) -> Iterator[dict[str, Any]]:
    """Raw examples (numpy values) of one TFDS split, in a deterministic order."""
    from spot.quiet import import_seqio

    seqio = import_seqio()

    try:
        source = seqio.TfdsDataSource(tfds_name, splits={tfds_split: tfds_split},
                                      read_only=not download)
        ds = source.get_dataset(tfds_split, shuffle=shuffle_files, seed=seed)
        yield from ds.as_numpy_iterator()
    except DataError:
        raise
    except Exception as e:  # TFDS raises AssertionError, NotFoundError, DownloadError, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = ("" if download else
                f"; prepare it first (`tfds build {split_name_version(tfds_name)[0]}` with "
                f"TFDS_DATA_DIR={tfds_data_dir()}) or allow downloads (`spot tasks show "
                f"--download`; training downloads unless SPOT_TFDS_DOWNLOAD=0)")
        raise DataError(f"cannot read TFDS {tfds_name} split {tfds_split!r}: "
                        f"{type(e).__name__}: {first[:300]}{hint}") from None
