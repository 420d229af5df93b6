"""`spot library export` never writes into the library it reads from."""

from __future__ import annotations

import numpy as np
import pytest

from spot.errors import LibraryError
from spot.library.store import PromptLibrary


def test_export_into_the_library_is_refused(tmp_path):
    root = tmp_path / "lib"
    with PromptLibrary(root, create=True) as lib:
        e = lib.add(task="rte", prompt=np.ones((2, 4), np.float32))
        array = root / "arrays" / e.id[:2] / f"{e.id}.prompt.npy"
        before = sorted(p.relative_to(root) for p in root.rglob("*"))
        for out in (array, root / "extra.npy", tmp_path / "link" / "x.npy"):
            if out.parent.name == "link":
                out.parent.symlink_to(root)
            with pytest.raises(LibraryError, match="inside the library"):
                lib.export(e, out)
        assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
        assert lib.export(e, tmp_path / "out.npy") == tmp_path / "out.npy"
