"""The folder table (issue 23, item 1) on configs that carry `seeds: N`, its numbers file and
the challenge's final score beside the forgetting quality, and the figure drawn from it: one
real folder audit on the bundled MNIST digits (it replaces test_audit.py's folder test, whose
configs it holds), read by the tests below."""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest
import yaml

from src.audit.__main__ import main as audit_main
from src.config import load_config, member_config, run_id
from tests.conftest import QUICKSTART, set_dotted

SMALL = {"dataset.forget_split": 0.02, "training.epochs": 3, "unlearning.epochs": 2}  # 72 forget examples
OP = {"unlearning.algorithm": "dp-baseline", "unlearning.iteration": None,
      "unlearning.dp-baseline": {"epsilon_target": 1}}
FINE_TUNE_ONE_EPOCH = {"unlearning.algorithm": "ft", "unlearning.iteration": None, "unlearning.epochs": 1,
                       "unlearning.max_lr": 0.01, "unlearning.weight_decay": 0.0005}
CHAINS = 12


def write_config(folder, name, overrides, checkpoints):
    data = yaml.safe_load(QUICKSTART.read_text())
    for key, value in {**SMALL, "checkpoints_dir": str(checkpoints), "name": name, **overrides}.items():
        set_dotted(data, key, value)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def folder_audit(tmp_path_factory, session_checkpoints):
    """gc-a carries `seeds: 4`; gc-b is the same method with one seed and another global seed
    (left out: one config per method); op-a is certified, ft-a empirical (one epoch of fine-tuning)."""
    root = tmp_path_factory.mktemp("folder-audit")
    folder = root / "folder"
    folder.mkdir()
    paths = {"gc-a": write_config(folder, "gc-a", {"global_seed": 1234, "seeds": 4}, session_checkpoints),
             "gc-b": write_config(folder, "gc-b", {"global_seed": 9153}, session_checkpoints),
             "op-a": write_config(folder, "op-a", OP, session_checkpoints),
             "ft-a": write_config(folder, "ft-a", FINE_TUNE_ONE_EPOCH, session_checkpoints)}
    out = root / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = audit_main(["--folder", str(folder), "--chains", str(CHAINS), "--out", str(out), "--quiet"])
    assert code == 0
    numbers = json.loads((out / "tightness-folder.json").read_text())
    return {"paths": paths, "out": out, "numbers": numbers, "printed": printed.getvalue(),
            "table": (out / "tightness-folder.md").read_text()}


def audit_json(out, config_path) -> dict:
    (directory,) = [p for p in out.iterdir() if p.is_dir() and p.name.startswith(config_path.stem + "-")]
    return json.loads((directory / "audit.json").read_text())


def test_a_configs_seeds_are_ignored_with_a_note_and_its_audit_is_member_0s(folder_audit):
    rows = folder_audit["numbers"]["rows"]
    # gc-a (seeds: 4) and gc-b (one seed) are one method: one row, the first by file name
    assert [r["config"] for r in rows] == ["ft-a", "gc-a", "op-a"]
    seeds = {r["config"]: r["config_seeds"] for r in rows}
    assert seeds == {"ft-a": 1, "gc-a": 4, "op-a": 1}
    assert all(r["chains"] == CHAINS for r in rows)
    note = folder_audit["numbers"]["seeds_note"]
    assert "seeds: 4" in note and "1 of 3 rows" in note and "member 0" in note
    assert folder_audit["table"].rstrip().endswith(note)
    # audit.json says so, and its id is member 0's single run (the same audit, never a copy)
    path = folder_audit["paths"]["gc-a"]
    result = audit_json(folder_audit["out"], path)
    assert result["config_seeds"] == 4 and "seeds: 4 ignored" in result["config_seeds_note"]
    single = member_config(load_config(path), 0)
    assert single.seeds == 1 and single.global_seed == 1234
    assert result["audit_id"] == f"{run_id(single)}-n{CHAINS}-conf0.95"
    assert run_id(load_config(path)) != run_id(single)  # the ensemble's own run id would differ
    assert "config_seeds" not in audit_json(folder_audit["out"], folder_audit["paths"]["op-a"])


def test_the_table_and_its_numbers_agree(folder_audit):
    rows = {r["config"]: r for r in folder_audit["numbers"]["rows"]}
    table = folder_audit["table"]
    assert table in folder_audit["printed"]
    assert table.splitlines()[0] == (
        "| method | config | certified epsilon | after conversion | exact instance | Gaussian estimate | "
        "lower bound | ratio | Gaussian ratio | ceiling | forgetting quality | challenge score | "
        "closeness lower bound | N | seconds |")
    lines = [line for line in table.splitlines()[2:] if line.startswith("|")]
    header = [c.strip() for c in table.splitlines()[0].strip("|").split("|")]
    assert len(lines) == 3
    for line in lines:
        cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))
        r = rows[cells["config"]]
        assert float(cells["lower bound"]) == math.floor(r["lower_bound"] * 1000) / 1000
        assert float(cells["challenge score"]) == pytest.approx(r["challenge_score"], abs=5e-4)
        assert float(cells["forgetting quality"]) == pytest.approx(r["forgetting_quality"], abs=5e-4)
        # every row has closeness to retrain (the same retrained models for every method)
        assert cells["closeness lower bound"] not in ("-", "")
        if r["certified_epsilon"] is None:
            assert cells["certified epsilon"] == "none"
        else:
            assert float(cells["certified epsilon"]) == math.ceil(r["certified_epsilon"] * 1000) / 1000
    # the certified methods keep their certificates; fine-tuning leaks against its own reference
    assert rows["gc-a"]["certified_epsilon"] == pytest.approx(1.0)
    assert rows["ft-a"]["certified_epsilon"] is None and rows["ft-a"]["lower_bound"] > 0
    for r in rows.values():
        assert r["certified_epsilon"] is None or r["lower_bound"] <= r["certified_epsilon"]


def test_the_challenge_score_is_forgetting_quality_times_the_utility_ratios(folder_audit):
    """From the measures audit.json keeps: F (RA / RA_retrain) (TA / TA_retrain), the
    accuracies the mean over the 12 models of each side, every one a real accuracy."""
    for name in ("ft-a", "gc-a", "op-a"):
        c = audit_json(folder_audit["out"], folder_audit["paths"][name])["closeness_to_retrain"]
        acc = c["accuracy"]
        for side in ("unlearned", "retrained"):
            for split in ("retain", "test"):
                assert 0.1 < acc[side][split] <= 1  # better than chance on ten classes
        expected = (c["forgetting_quality"] * acc["unlearned"]["retain"] / acc["retrained"]["retain"]
                    * acc["unlearned"]["test"] / acc["retrained"]["test"])
        assert c["challenge_score"] == pytest.approx(expected, rel=1e-12)
        row = next(r for r in folder_audit["numbers"]["rows"] if r["config"] == name)
        assert row["challenge_score"] == c["challenge_score"]


def test_the_challenge_score_by_hand_and_retrain_at_its_optimum():
    import numpy as np

    from src.audit.closeness import challenge_score, example_epsilons, forgetting_quality

    # N = 64 per side: buckets 0.5 wide, worth 1, 1/2, 1/4, ...; epsilons 0, 0.6, 0.2, 1.2 are
    # worth 1, 1/2, 1, 1/4: F = 2.75 / 4 = 0.6875. RA 0.9 against 0.96 (ratio 15/16), TA 0.84
    # against 0.875 (ratio 24/25): 0.6875 * 15/16 * 24/25 = 0.61875.
    quality = forgetting_quality([0.0, 0.6, 0.2, 1.2], 64)
    assert quality == 0.6875
    assert challenge_score(quality, 0.9, 0.84, 0.96, 0.875) == pytest.approx(0.61875, rel=1e-12)
    # better utility than retraining is not capped (the challenge's ratios are plain ratios)
    assert challenge_score(0.5, 0.99, 0.9, 0.9, 0.9) == pytest.approx(0.55, rel=1e-12)
    # retrain scored against itself: every decision rule has FPR = TPR, so every example's
    # epsilon is 0, F = 1 and, with its own accuracies, the final score is its optimum 1
    rng = np.random.default_rng(3)
    retrained = rng.normal(2.0, 1.5, (32, 20))
    epsilons = example_epsilons(retrained, retrained)
    assert np.all(epsilons == 0)
    assert challenge_score(forgetting_quality(epsilons, 32), 0.93, 0.88, 0.93, 0.88) == 1.0
    # an unlearned set one standard deviation away scores below it
    moved = example_epsilons(retrained + 1.5, retrained)
    assert challenge_score(forgetting_quality(moved, 32), 0.93, 0.88, 0.93, 0.88) < 1.0
    for bad in ((0.5, 0.9, 0.9, 0.0, 0.9), (0.5, 1.2, 0.9, 0.9, 0.9), (float("nan"), 0.9, 0.9, 0.9, 0.9)):
        with pytest.raises(ValueError):
            challenge_score(*bad)


def plotted(ax, label: str, labelled) -> dict:
    """{row label: x} of the series drawn under `label` in `ax`, read back from the axes; the
    rows are named by the tick labels of `labelled` (the left panel: the right one shares them)."""
    (line,) = [line for line in ax.get_lines() if line.get_label() == label]
    ticks = {tick: text.get_text() for tick, text in zip(labelled.get_yticks(), labelled.get_yticklabels())}
    return {ticks[y]: x for x, y in zip(line.get_xdata(), line.get_ydata())}


def test_the_figure_is_drawn_from_the_audits_table(folder_audit, tmp_path, capsys):
    """The figure of the folder table: every plotted value is the table's, read back from the
    drawn axes; certified methods above the empirical ones, shaded."""
    from src.figures.audit_table import CLOSENESS_SERIES, EPSILON_SERIES, draw, main

    table = folder_audit["numbers"]
    fig = draw(table)
    left, right = fig.axes[:2]
    ticks = sorted(zip(left.get_yticks(), (t.get_text() for t in left.get_yticklabels())), reverse=True)
    # top to bottom: the certified methods (the shared suffix "-a" is cut), then fine-tuning
    assert [label for _, label in ticks] == ["gc (iteration)", "op (dp-baseline)", "ft (ft), no certificate"]
    by_label = dict(zip(["ft (ft), no certificate", "gc (iteration)", "op (dp-baseline)"], table["rows"]))
    for ax, series in ((left, EPSILON_SERIES), (right, CLOSENESS_SERIES)):
        for key, label, _ in series:
            expected = {name: row[key] for name, row in by_label.items() if row[key] is not None}
            assert plotted(ax, label, left) == pytest.approx(expected, rel=1e-12)
    # no certificate for fine-tuning: no certified marker on its row, its label says so
    assert "ft (ft), no certificate" not in plotted(left, "certified epsilon", left)
    shaded = sorted(round(p.get_y() + p.get_height() / 2) for p in left.patches)
    assert shaded == [1, 2]  # the two certified rows
    # the CLI writes png and pdf and names them; a file that is no table is one line, exit 2
    path = folder_audit["out"] / "tightness-folder.json"
    assert main(["--table", str(path), "--out", str(tmp_path / "figs"), "--prefix", "t_"]) == 0
    assert capsys.readouterr().out.split() == ["wrote", str(tmp_path / "figs" / "t_audit.png"),
                                               "wrote", str(tmp_path / "figs" / "t_audit.pdf")]
    assert (tmp_path / "figs" / "t_audit.png").stat().st_size > 20_000
    (tmp_path / "bad.json").write_text('{"rows": [{"method": "ft"}]}')
    assert main(["--table", str(tmp_path / "bad.json"), "--out", str(tmp_path / "figs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --table:") and "lacks config" in err and len(err.strip().splitlines()) == 1


def test_the_recorded_commit_is_the_one_the_process_loaded(tmp_path):
    """A folder audit runs for many minutes; a commit made meanwhile must not be recorded for
    the audits whose code was loaded before it. code_commit() is read once per process."""
    import importlib.util
    import shutil
    import subprocess

    from tests.conftest import REPO

    copy = tmp_path / "src" / "audit" / "report.py"
    copy.parent.mkdir(parents=True)
    shutil.copy(REPO / "src" / "audit" / "report.py", copy)

    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                              check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "first")
    first = git("rev-parse", "HEAD")
    spec = importlib.util.spec_from_file_location("report_copy", copy)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.code_commit() == first
    (tmp_path / "later.txt").write_text("a commit made while the audit runs")
    git("add", "-A")
    git("commit", "-qm", "second")
    assert git("rev-parse", "HEAD") != first
    assert module.code_commit() == first
