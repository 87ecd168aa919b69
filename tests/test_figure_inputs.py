"""Figures that cannot be fooled: a copied run counts once, a run with bad values is left out
with its file named, and only `finished: true` is finished."""

from __future__ import annotations

import json
import shutil

import pytest

from src.figures import aggregate
from src.figures.__main__ import main
from src.figures.runs import load_runs
from tests.test_figures import pabi_config, write_group, write_run


def points(logs, notes=None):
    series, dropped = aggregate.budget_series(load_runs(logs, notes=notes), 1, "certified", 4, False)
    (gc,) = [s for s in series if s.algorithm == "iteration"]
    return gc.points, dropped


def four_runs(logs):
    write_group(logs, "g", pabi_config(), [[0.50, 0.60], [0.52, 0.62], [0.54, 0.64], [0.56, 0.66]])


def test_a_copied_run_folder_counts_once_with_a_warning(tmp_path):
    four_runs(tmp_path)
    expected, _ = points(tmp_path)
    shutil.copytree(tmp_path / "g0", tmp_path / "g0 copy")
    notes = []
    got, _ = points(tmp_path, notes)
    assert [(p.n_runs, p.mean, p.ci95) for p in got] == [(p.n_runs, p.mean, p.ci95) for p in expected]
    assert got[0].n_runs == 4
    assert notes == [f"{tmp_path / 'g0 copy'}: the same run as {tmp_path / 'g0'} (run id g0, same config): "
                     "counted once"]
    # The same run id logged to another logs_dir is still the same run.
    config = (tmp_path / "g0 copy" / "config.yaml").read_text()
    (tmp_path / "g0 copy" / "config.yaml").write_text(config + "logs_dir: elsewhere\n")
    assert points(tmp_path)[0][0].n_runs == 4
    # The same run id with another config is another run (an edit, another version): counted, and said.
    (tmp_path / "g0 copy" / "config.yaml").write_text(config + "global_seed: 5\n")
    notes = []
    assert points(tmp_path, notes)[0][0].n_runs == 5
    assert notes == [f"{tmp_path / 'g0 copy'}: run id g0 also at {tmp_path / 'g0'} with another config: both counted"]


def with_value(run_dir, key, text):
    """Replace the value of `key` in the first row holding it by the raw JSON `text`."""
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        row = json.loads(line)
        if key in row:
            lines[i] = line.replace(f'"{key}": {json.dumps(row[key])}', f'"{key}": {text}', 1)
            assert lines[i] != line
            break
    path.write_text("\n".join(lines) + "\n")
    return i + 1


def test_nan_and_string_accuracies_leave_the_run_out_naming_file_and_line(tmp_path):
    four_runs(tmp_path)
    write_run(tmp_path, "g4", pabi_config(), [0.9, 0.9], cert=(7.0812, 1.0036))
    line_nan = with_value(tmp_path / "g4", "Val (Unlearn)_accuracy", "NaN")  # what json.dump writes for nan
    write_run(tmp_path, "g5", pabi_config(), [0.9, 0.9], cert=(7.0812, 1.0036))
    line_str = with_value(tmp_path / "g5", "Val (Unlearn)_accuracy", '"high"')
    notes = []
    got, dropped = points(tmp_path, notes)
    assert got[0].n_runs == 4 and got[0].mean == pytest.approx(0.53)  # neither bad run is in the mean
    metrics = lambda name: tmp_path / name / "metrics.jsonl"
    assert notes == [f"{metrics('g4')}, line {line_nan}: 'Val (Unlearn)_accuracy' is NaN (a diverged or broken "
                     "run): run left out",
                     f"{metrics('g5')}, line {line_str}: 'Val (Unlearn)_accuracy' is \"high\", not a finite number: "
                     "run left out"]
    assert not dropped  # no other, contradictory, reason is given for them


def test_a_diverged_run_recorded_as_finished_is_left_out(tmp_path):
    four_runs(tmp_path)
    # As an older version wrote a diverged run: finite accuracies, NaN losses, finished: true.
    write_run(tmp_path, "div", pabi_config(), [0.1, 0.1], cert=(7.0812, 1.0036),
              extra_rows=[{"loss": float("nan"), "accuracy": 0.1, "state_step": 1}])
    notes = []
    assert points(tmp_path, notes)[0][0].n_runs == 4
    assert len(notes) == 1 and "'loss' is NaN" in notes[0] and str(tmp_path / "div" / "metrics.jsonl") in notes[0]


def test_only_finished_true_is_finished(tmp_path):
    four_runs(tmp_path)
    for value in ("no", 1, None):
        name = f"f{value}"
        write_run(tmp_path, name, pabi_config(), [0.9, 0.9], cert=(7.0812, 1.0036))
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        (tmp_path / name / "summary.json").write_text(json.dumps({**summary, "finished": value}))
    notes = []
    assert points(tmp_path, notes)[0][0].n_runs == 4
    assert notes == [f"{tmp_path / 'f1' / 'summary.json'}: 'finished' is 1, not true: not counted",
                     f"{tmp_path / 'fNone' / 'summary.json'}: 'finished' is null, not true: not counted",
                     f"{tmp_path / 'fno' / 'summary.json'}: 'finished' is \"no\", not true: not counted"]


def test_cli_prints_each_warning_with_its_file(tmp_path, capsys):
    four_runs(tmp_path)
    shutil.copytree(tmp_path / "g1", tmp_path / "g1-again")
    with_value(tmp_path / "g2", "Val (Unlearn)_accuracy", '"n/a"')
    assert main(["--figure", "1", "--logs", str(tmp_path), "--out", str(tmp_path / "f"), "--min-runs", "1"]) == 0
    err = capsys.readouterr().err
    assert f"warning: {tmp_path / 'g1-again'}: the same run as {tmp_path / 'g1'}" in err
    assert f"warning: {tmp_path / 'g2' / 'metrics.jsonl'}, line" in err
    rows = (tmp_path / "f" / "figure1.csv").read_text().splitlines()[1:]
    assert {row.split(",")[8] for row in rows} == {"3"}  # g0, g1, g3
