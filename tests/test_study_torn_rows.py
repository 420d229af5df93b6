"""A crash mid-append leaves a torn last line in a study shard's results file: it is not a
finished row (even when its fields happen to parse), and the next append starts clean."""

from __future__ import annotations

from spot.workflows.study import _append_row, read_rows


def test_torn_last_line_is_not_a_result_and_next_append_starts_clean(tmp_path):
    shard = tmp_path / "results" / "shard-0-of-1.csv"
    shard.parent.mkdir()
    # The crash cut "mnli,rte,0,55.25\n" after "5": every field is present and numeric.
    shard.write_text("source,target,seed,score\nnone,rte,0,50.5\nmnli,rte,0,5")
    assert read_rows(tmp_path) == [{"source": "none", "target": "rte", "seed": "0",
                                    "score": "50.5"}]
    _append_row(shard, {"source": "mnli", "target": "rte", "seed": 0, "score": 55.25})
    assert shard.read_text().splitlines() == ["source,target,seed,score", "none,rte,0,50.5",
                                              "mnli,rte,0,55.25"]
    assert [r["score"] for r in read_rows(tmp_path)] == ["50.5", "55.25"]


def test_torn_header_is_rewritten(tmp_path):
    shard = tmp_path / "results" / "shard-0-of-1.csv"
    shard.parent.mkdir()
    shard.write_text("source,tar")
    assert read_rows(tmp_path) == []
    _append_row(shard, {"source": "none", "target": "cb", "seed": 1, "score": 70})
    assert shard.read_text().splitlines() == ["source,target,seed,score", "none,cb,1,70"]
