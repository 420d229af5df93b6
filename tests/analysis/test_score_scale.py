"""Results scores must be on spot's 0-100 scale (correlation metrics such as CoLA's mcc can
dip below 0, down to -100); anything else is refused, naming file, line and value."""

from __future__ import annotations

import pytest

from spot.analysis.transfer import read_results
from spot.errors import DataError


def _csv(tmp_path, score):
    path = tmp_path / "results.csv"
    path.write_text("source,target,seed,score\nnone,rte,0,55\n"
                    f"mnli,rte,0,{score}\n")
    return path


@pytest.mark.parametrize("score", ["160", "100.5", "-100.5", "1e3"])
def test_scores_off_the_scale_are_refused(tmp_path, score):
    path = _csv(tmp_path, score)
    with pytest.raises(DataError) as info:
        read_results(path)
    message = str(info.value)
    assert message.startswith(f"{path}:3: column 'score'") and repr(score) in message, message
    assert "0-100" in message


@pytest.mark.parametrize("score", ["0", "100", "99.5", "-3.2", "-100"])
def test_scores_on_the_scale_are_read(tmp_path, score):
    assert read_results(_csv(tmp_path, score))[1].score == float(score)


def test_summarize_cli_refuses_with_exit_2(tmp_path, capsys):
    from spot.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["study", "summarize", str(_csv(tmp_path, "160"))])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error:") and ":3:" in err
    assert "Traceback" not in err
