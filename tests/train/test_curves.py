"""Training curves: the logs read as a run writes them, the moving average, the PNG of several runs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image

from audiossl.bin.plot_curves import main as plot_curves_main
from audiossl.errors import UserError
from audiossl.train.curves import _moving_average, plot_curves, read_log


def write_run(exp: Path, updates: int, valid_every: int, slope: float) -> Path:
    exp.mkdir(parents=True)
    with open(exp / "updates.jsonl", "w") as f:
        for u in range(1, updates + 1):
            f.write(json.dumps({"update": u, "lr": 1e-3, "loss": 5 - slope * u, "acc": slope * u}) + "\n")
    with open(exp / "valid.jsonl", "w") as f:
        for u in range(valid_every, updates + 1, valid_every):
            f.write(json.dumps({"update": u, "loss": 5.5 - slope * u, "acc": slope * u / 2}) + "\n")
    return exp


def test_moving_average_takes_the_last_finite_values():
    values = np.array([1.0, 3.0, np.nan, 5.0, 7.0])
    np.testing.assert_allclose(_moving_average(values, 2), [1.0, 2.0, 3.0, 5.0, 6.0])


def test_a_last_line_cut_short_is_left_out_and_a_bad_line_before_it_is_named(tmp_path):
    log = tmp_path / "updates.jsonl"
    log.write_text('{"update": 1, "loss": 2.0}\n{"update": 2, "lo')
    assert read_log(log) == [{"update": 1, "loss": 2.0}]
    log.write_text('{"update": 1, "loss": 2.0}\ngarbage\n{"update": 3, "loss": 1.0}\n')
    with pytest.raises(UserError, match=f"{log}:2: not a JSON record"):
        read_log(log)


def test_two_runs_are_drawn_on_the_same_axes(tmp_path):
    runs = {"pretrained": write_run(tmp_path / "a", 60, 20, 0.05), "scratch": write_run(tmp_path / "b", 40, 20, 0.02)}
    path = plot_curves(runs, tmp_path / "curves.png", smoothing=5)
    height, width, _ = image.imread(path).shape
    assert (width, height) == (1008, 224)   # one row of three panels (loss, lr, acc) of 4.2 x 2.8 in at 80 dpi
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "curves.png"]   # no temporary left
    with pytest.raises(UserError, match="no updates logged in"):
        plot_curves({"empty": tmp_path / "none"}, tmp_path / "x.png")


def test_plot_curves_names_what_it_cannot_draw(tmp_path, capsys):
    run = write_run(tmp_path / "a", 10, 5, 0.1)
    assert plot_curves_main(["--out", str(tmp_path / "c.png"), str(run)]) == 0 and (tmp_path / "c.png").exists()
    assert plot_curves_main([str(tmp_path / "missing")]) == 1
    assert f"{tmp_path / 'missing'}: no updates.jsonl" in capsys.readouterr().err
    assert plot_curves_main(["--label", "x", str(run), str(run)]) == 1
    assert "1 --label for 2 exp dirs" in capsys.readouterr().err
