"""Hostile inputs, second pass (issue 26): the surfaces added after the first pass (the audit,
the stream and Langevin figures, memorization files, thread counts, the launcher) refuse bad
input in one line with exit status 2, never hang, and never accept a value silently."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from src import threads
from src.audit.__main__ import main as audit_main
from tests.conftest import QUICKSTART, REPO, run_main

OP = {"unlearning.algorithm": "dp-baseline", "unlearning.iteration": None,
      "unlearning.dp-baseline": {"epsilon_target": 1}}


def one_line_error(err: str, *words: str) -> None:
    """The refusal (config errors list each key on a line of its own under it)."""
    lines = err.strip().splitlines()
    assert lines and any(line.startswith("error: ") for line in lines) and "Traceback" not in err, err
    for word in words:
        assert word in err, (word, err)


# -- the config: values that were silently accepted -------------------------------------------------------

@pytest.mark.parametrize("key", ["evaluation.tow.terms", "evaluation.mia.svc.features",
                                 "evaluation.mia.threshold.fpr"])
def test_empty_metric_lists_are_refused(make_config, capsys, key):
    """An empty ToW product is 1 (a perfect score whatever the gaps); no features, no attack."""
    path, _ = make_config("empty", {key: []})
    assert run_main("--config", path, "--dry-run") == 2
    one_line_error(capsys.readouterr().err, key, "at least 1 item")


@pytest.mark.parametrize("key, value", [("training.epochs", True), ("global_seed", False),
                                        ("unlearning.iteration.epsilon_target", True),
                                        ("dataset.val_split", True), ("threads", True),
                                        ("evaluation.mia.threshold.fpr", [0.1, True])])
def test_yaml_booleans_are_not_numbers(make_config, capsys, key, value):
    path, _ = make_config("bool", {key: value})
    assert run_main("--config", path, "--dry-run") == 2
    one_line_error(capsys.readouterr().err, key, "not true/false")


def test_booleans_where_booleans_belong_still_work(make_config, capsys):
    path, _ = make_config("bools", {"training.nesterov": False, "post_unlearning.post_unlearn_clip": False,
                                    "evaluation.tow.abs_gap": True})
    assert run_main("--config", path, "--dry-run") == 0


# -- configs and overrides that hung or ended in a traceback -------------------------------------------

def test_a_fifo_as_config_is_refused_instead_of_blocking(tmp_path):
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    result = subprocess.run([sys.executable, "experiment.py", "--config", str(fifo), "--dry-run"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    one_line_error(result.stderr, "not a regular file")


def test_a_non_utf8_override_is_a_one_line_error(capsys):
    # what Python makes of the byte 0xff in argv (surrogateescape)
    assert run_main("--config", QUICKSTART, "--dry-run", "--override", os.fsdecode(b"name=a\xff")) == 2
    one_line_error(capsys.readouterr().err, "not UTF-8", "0xff")


@pytest.mark.parametrize("char", ["\x07", "\x00", "\x1b"])
def test_control_characters_are_one_line_errors(tmp_path, capsys, char):
    assert run_main("--config", QUICKSTART, "--dry-run", "--override", f"name=a{char}b") == 2
    one_line_error(capsys.readouterr().err, f"U+{ord(char):04X}")
    path = tmp_path / "c.yaml"
    text = QUICKSTART.read_bytes()
    path.write_bytes(text.replace(b"name: quickstart", b"name: quick" + char.encode() + b"start"))
    line = text[:text.index(b"name: quickstart")].count(b"\n") + 1
    assert run_main("--config", path, "--dry-run") == 2
    one_line_error(capsys.readouterr().err, f"U+{ord(char):04X}", f"at line {line} ")


# -- thread counts --------------------------------------------------------------------------------------

def test_thread_counts_above_the_cores_are_cut_to_them():
    budget = threads.ThreadBudget(cores=2, ceiling=None, requested=10_000)
    assert budget.choose(None) == 2 and budget.choose(1e12) == 2
    assert "10000" in budget.note() and "2 core(s)" in budget.note()
    assert threads.ThreadBudget(cores=4, ceiling=None, requested=3).note() is None


def test_ten_thousand_threads_are_not_obeyed(make_config, capsys):
    """The case that took the machine down: --threads 10000 on a few cores."""
    from src.training import cpu_setup

    before = torch.get_num_threads()
    path, _ = make_config("threads", {"threads": 10_000})
    assert run_main("--config", path, "--dry-run", "--threads", "10000") == 0
    assert "note: 10000 CPU threads asked for" in capsys.readouterr().err
    from src.config import load_config

    config = load_config(path)
    try:
        chosen, _ = cpu_setup.configure(config, threads.prepare(config.threads), torch.device("cpu"))
        assert chosen == torch.get_num_threads() <= threads.available_cores(quota=threads.cgroup_cpu_limit())
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_audit_threads_must_be_positive(value, capsys):
    with pytest.raises(SystemExit) as exit_:
        audit_main(["--config", str(QUICKSTART), "--threads", value])
    assert exit_.value.code == 2 and "--threads" in capsys.readouterr().err


# -- the audit: checked before any work ----------------------------------------------------------------

def test_the_smallest_useful_chain_count_is_where_the_ceiling_turns_positive():
    """Independently: a perfect separation of m evaluation chains bounds P below by
    alpha^(1/m) and Q above by 1 - alpha^(1/m) (Clopper-Pearson at k = m and k = 0)."""
    from src.audit.bounds import ceiling, smallest_useful_chains

    for delta, confidence in ((0.0, 0.95), (1e-5, 0.95), (0.3, 0.9), (1e-5, 0.999)):
        alpha = (1 - confidence) / 2
        # ln((a - delta) / (1 - a)) > 0 with a = alpha^(1/m)
        m = next(m for m in range(1, 10_000) if 2 * alpha ** (1 / m) - 1 > delta)
        n = smallest_useful_chains(delta, confidence)
        assert n == max(4, 2 * m - 1)
        assert ceiling(n - n // 2, delta, confidence) > 0 >= ceiling((n - 1) - (n - 1) // 2, delta, confidence)
    assert smallest_useful_chains(0.0, 0.95) == 11


def test_chain_counts_that_can_never_show_anything_are_refused(make_config, tmp_path, capsys):
    path, _ = make_config("few", OP)
    for chains in (4, 10):
        assert audit_main(["--config", str(path), "--chains", str(chains), "--out", str(tmp_path / "out")]) == 2
        one_line_error(capsys.readouterr().err, "--chains", "use at least 11")
    assert not (tmp_path / "out").exists()


def test_chains_beyond_memory_are_refused_before_any_work(make_config, tmp_path):
    from src.audit.audit import CHAIN_OVERHEAD_BYTES, check_chains_fit
    from src.errors import UserError

    # two worlds, theta and one copy in float32, and the per-chain bookkeeping
    most = 10**9 // (2 * (2 * 4 * 4000 + CHAIN_OVERHEAD_BYTES))
    check_chains_fit(most, 4000, available=10**9)
    with pytest.raises(UserError, match=f"at most {most} fit"):
        check_chains_fit(most + 1, 4000, available=10**9)
    checkpoints = tmp_path / "fresh-checkpoints"
    path, _ = make_config("many", {**OP, "checkpoints_dir": str(checkpoints)})
    result = subprocess.run([sys.executable, "-m", "src.audit", "--config", str(path), "--chains", "100000000",
                             "--out", str(tmp_path / "out"), "--quiet"], cwd=REPO, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 2
    one_line_error(result.stderr, "--chains: 100000000", "GB")
    assert not checkpoints.exists()  # nothing was trained


@pytest.mark.parametrize("args, words", [(["--noise-scale", "1e308"], ["--noise-scale", "float32"]),
                                         (["--out", "FILE"], ["--out", "not a directory"])])
def test_audit_arguments_that_failed_late_are_refused_first(make_config, tmp_path, capsys, args, words):
    checkpoints = tmp_path / "fresh-checkpoints"
    path, _ = make_config("late", {**OP, "checkpoints_dir": str(checkpoints)})
    (tmp_path / "FILE").write_text("keep me")
    args = [str(tmp_path / "FILE") if a == "FILE" else a for a in args]
    assert audit_main(["--config", str(path), "--chains", "16", "--quiet", *(["--out", str(tmp_path / "o")]
                       if "--out" not in args else []), *args]) == 2
    one_line_error(capsys.readouterr().err, *words)
    assert not checkpoints.exists() and (tmp_path / "FILE").read_text() == "keep me"


def test_a_folder_with_nothing_auditable_is_refused(make_config, tmp_path, capsys):
    folder = tmp_path / "folder"
    make_config("dpsgd", {"unlearning.algorithm": "dp-sgd", "unlearning.iteration": None,
                          "training.dp_sgd": {"l2_norm_clip": 1.0, "target_epsilon": 1.0, "target_delta": 1e-5}},
                directory=folder)
    assert audit_main(["--folder", str(folder), "--chains", "16", "--out", str(tmp_path / "out"), "--quiet"]) == 2
    one_line_error(capsys.readouterr().err, "--folder", "can be audited")
    assert not (tmp_path / "out").exists()


# -- memorization files and the memorization cache -----------------------------------------------------

MEMORIZATION_FILE = ["dataset.forget.strategy=memorization", "dataset.forget.memorization.source=file"]


@pytest.fixture(scope="module")
def raw():
    from src.config import load_config
    from src.data.mnist_dataset import MNIST5k

    return MNIST5k.load(load_config(QUICKSTART), "cpu")


@pytest.mark.parametrize("kind", ["strings", "objects", "complex"])
def test_memorization_files_of_other_types_are_refused(raw, tmp_path, kind):
    import numpy as np

    from src.config import load_config
    from src.data.forget_sets import build_split
    from src.errors import UserError

    pool = raw.train_y.shape[0]
    if kind == "strings":
        np.save(tmp_path / "m.npy", np.array(["0.5"] * pool))
        path, dtype = tmp_path / "m.npy", "<U3"
    elif kind == "objects":  # np.savez pickles an object array; np.load refuses to unpickle it
        np.savez(tmp_path / "m.npz", memorization=np.array([0.5] * (pool - 1) + [None], dtype=object))
        path, dtype = tmp_path / "m.npz", "cannot read 'memorization'"
    else:  # the imaginary part would be dropped with a numpy warning only
        np.save(tmp_path / "m.npy", np.full(pool, 0.5 + 1j))
        path, dtype = tmp_path / "m.npy", "complex128"
    config = load_config(QUICKSTART, [*MEMORIZATION_FILE, f"dataset.forget.memorization.path={path}"])
    with pytest.raises(UserError, match="dataset.forget.memorization.path") as error:
        build_split(config, raw)
    assert dtype in str(error.value)


def test_a_memorization_path_is_not_ignored_with_source_subsample(capsys):
    assert run_main("--config", QUICKSTART, "--dry-run", "--override", "dataset.forget.strategy=memorization",
                    "--override", "dataset.forget.memorization.path=scores.npy") == 2
    one_line_error(capsys.readouterr().err, "dataset.forget", "only read with memorization.source: file")


def test_the_memorization_lock_leaves_no_file_and_still_excludes(tmp_path):
    import threading
    import time

    from src.evaluation.memorization import _locked

    path = tmp_path / "memorization" / "key.npz"
    inside, overlaps = [], []

    def worker():
        for _ in range(5):
            with _locked(path):
                inside.append(1)
                if len(inside) > 1:
                    overlaps.append(1)
                time.sleep(0.002)
                inside.pop()

    workers = [threading.Thread(target=worker) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not overlaps
    assert list((tmp_path / "memorization").iterdir()) == []  # no empty .lock file left behind


# -- exit statuses ---------------------------------------------------------------------------------------

def test_feature_extractor_user_errors_exit_2(tmp_path, capsys):
    import feature_extractor
    from tests import datafiles

    with datafiles.blocked_network():  # the missing CIFAR files are not downloaded
        code = feature_extractor.main(["--dataset", "cifar10", "--root", str(tmp_path / "none"), "--out",
                                       str(tmp_path / "out"), "--weights", str(tmp_path / "nope.pth"),
                                       "--device", "cpu"])
    assert code == 2
    assert "feature_extractor.py: error: " in capsys.readouterr().err


def test_run_exp_reports_a_logs_dir_that_is_a_file_as_one_failed_run(make_config, tmp_path):
    (tmp_path / "taken").write_text("a file, not a folder")
    exps = tmp_path / "exps"
    make_config("bad-logs", {"logs_dir": str(tmp_path / "taken")}, directory=exps)
    for args in ([], ["--dry-run"]):
        result = subprocess.run([sys.executable, str(REPO / "run_exp.py"), "-e", str(exps), "--run-logs",
                                 str(tmp_path / "run_logs"), *args], cwd=tmp_path, capture_output=True, text=True,
                                timeout=300)
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        assert "Traceback" not in output and "logs_dir" in output and "not a directory" in output
    assert (tmp_path / "taken").read_text() == "a file, not a folder"


# -- figures of streams and Langevin runs ----------------------------------------------------------------

def stream_logs(tmp_path, records=None, config_text=None, summary_bytes=None):
    """A finished stream run directory as the runner writes it (two requests)."""
    import json

    import yaml

    run = tmp_path / "logs" / "s0"
    run.mkdir(parents=True)
    config = {"dataset": {"name": "mnist_5k", "seed": 0}, "unlearning": {"algorithm": "iteration", "epochs": 1},
              "requests": {"num_requests": 2, "seed": 0}}
    (run / "config.yaml").write_text(config_text if config_text is not None else yaml.safe_dump(config))
    (run / "metrics.jsonl").write_text("")
    if records is None:
        records = [{"request": i, "test_accuracy": 0.5, "epochs": 1, "cumulative_epochs": i, "cumulative_steps": 10 * i,
                    "cumulative_seconds": 0.5 * i, "certified_epsilon": 1.0} for i in (1, 2)]
    summary = json.dumps({"finished": True, "run_id": "s0", "config_file": "streams/s0.yaml", "requests": records})
    (run / "summary.json").write_bytes(summary_bytes if summary_bytes is not None else summary.encode())
    return tmp_path / "logs"


def stream_figure(logs, out, capsys) -> tuple[int, str]:
    from src.figures import request_stream

    code = request_stream.main(["--logs", str(logs), "--out", str(out)])
    return code, capsys.readouterr().err


def test_a_good_stream_still_makes_its_figure(tmp_path, capsys):
    code, err = stream_figure(stream_logs(tmp_path), tmp_path / "out", capsys)
    assert code == 0, err
    assert sorted(p.suffix for p in (tmp_path / "out").iterdir()) == [".csv", ".csv", ".md", ".pdf", ".png"]


@pytest.mark.parametrize("case, words", [
    ("summary not utf-8", ["summary.json", "not UTF-8"]),
    ("config not utf-8", ["config.yaml", "not UTF-8"]),
    ("alias bomb", ["config.yaml", "expands"]),
    ("records not objects", ["request record 1 is int, not an object"]),
    ("no cumulative_seconds", ["cumulative_seconds"]),
])
def test_bad_stream_runs_are_refused_before_any_figure_is_written(tmp_path, capsys, case, words):
    kwargs = {}
    if case == "summary not utf-8":
        kwargs["summary_bytes"] = b'{"finished": true, "run_id": "s\xff0"}'
    elif case == "alias bomb":  # 10^5 values once expanded: the config reader stops at 10,000
        levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 5)]
        kwargs["config_text"] = "\n".join(levels) + "\nrequests: {num_requests: 2}\nunlearning: {algorithm: x}\n"
    elif case == "records not objects":
        kwargs["records"] = [1, 2]
    else:
        kwargs["records"] = [{"request": i, "test_accuracy": 0.5, "epochs": 1, "cumulative_epochs": i,
                              "cumulative_steps": 10 * i} for i in (1, 2)]
    logs = stream_logs(tmp_path, **kwargs)
    if case == "config not utf-8":  # Latin-1, as an editor might save it
        (logs / "s0" / "config.yaml").write_bytes(b"dataset: {name: mnist_5k}\nname: caf\xff\n")
    code, err = stream_figure(logs, tmp_path / "out", capsys)
    assert code == 2
    one_line_error(err, *words)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())  # no PNG, no CSV


def test_an_unreadable_summary_is_one_line(tmp_path, capsys, monkeypatch):
    import errno
    import pathlib

    logs = stream_logs(tmp_path)
    real_open = pathlib.Path.open

    def failing_open(self, *args, **kwargs):
        if self.name == "summary.json":
            raise OSError(errno.EIO, "Input/output error")  # as a failing disk reports it: no file name
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "open", failing_open)
    code, err = stream_figure(logs, tmp_path / "out", capsys)
    assert code == 2
    one_line_error(err, "summary.json", "Input/output error")


def langevin_logs(tmp_path, config, rows):
    import json

    import yaml

    run = tmp_path / "logs" / "l0"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "summary.json").write_text(json.dumps({"finished": True, "run_id": "l0", "noisy_steps": 1,
                                                  "config_file": "langevin_runs/x/fig3a/lmc-g0.yaml"}))
    return tmp_path / "logs"


@pytest.mark.parametrize("case, words", [("no section", ["no unlearning.langevin section"]),
                                         ("no accuracy", ["metrics.jsonl", "Test (Request)_accuracy"]),
                                         ("accuracy a string", ["metrics.jsonl", "Test (Request)_accuracy"])])
def test_langevin_runs_missing_what_the_figure_reads_are_one_line(tmp_path, capsys, case, words):
    from src.figures import langevin as figure

    config = {"dataset": {"name": "mnist_5k_3v8"}, "training": {"langevin": {"sigma": 0.1}},
              "unlearning": {"algorithm": "langevin", "langevin": {"epsilon_target": 2}}}
    row = {"request": 1, "request_size": 1, "request_steps": 1, "Test (Request)_accuracy": 0.8, "state_step": 1}
    if case == "no section":
        del config["unlearning"]["langevin"]
    elif case == "no accuracy":
        del row["Test (Request)_accuracy"]
    else:
        row["Test (Request)_accuracy"] = "0.8"
    logs = langevin_logs(tmp_path, config, [row])
    assert figure.main(["--logs", str(logs), "--out", str(tmp_path / "out")]) == 2
    one_line_error(capsys.readouterr().err, *words)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


# -- searches and values of the Langevin chain ------------------------------------------------------------

LANGEVIN = REPO / "langevin_runs" / "mini-mnist5k" / "fig3a" / "lmc-K_1-eps_0.5-g0.yaml"


@pytest.mark.parametrize("weight_decay", ["1e-300", "1e-10"])
def test_the_langevin_step_search_is_bounded(weight_decay):
    """K ~ alpha / (eta m) log(...): with m = 1e-300 the search walked K up from 1e303 (the dry
    run never returned); with 1e-10 its plan's per-step list ran out of memory."""
    result = subprocess.run([sys.executable, "experiment.py", "--config", str(LANGEVIN), "--dry-run",
                             "--override", f"training.weight_decay={weight_decay}",
                             "--override", f"unlearning.weight_decay={weight_decay}"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    one_line_error(result.stderr, "unlearning.langevin.epsilon_target", "more than 1e+07")


def test_the_step_up_after_the_closed_form_finds_the_first_certifying_k():
    """The bounded step-up (doubling, then bisection) ends where a walk one K at a time would:
    the smallest K whose certificate is at most the target."""
    from src.privacy import langevin as accountant

    chain = accountant.Chain(n=720, m=0.02, eta=3.7, M=1.0, sigma=0.05)
    for epsilon in (0.5, 2.0):
        choice = accountant.smallest_steps(epsilon, 1, chain, 1e-5)
        assert choice.epsilon <= epsilon
        below = accountant.certificate(choice.steps - 1, 1, chain, 1e-5, (1.0001, 1e4))
        assert below.epsilon > epsilon
    # and the step-up itself, from a closed form that falls short on purpose
    prefactor = accountant._single_prefactor(1, chain)
    low = accountant._certificate_of(prefactor, 1, chain, 1e-5, (1.0001, 1e4), "mironov")
    target = accountant._certificate_of(prefactor, 777, chain, 1e-5, (1.0001, 1e4), "mironov").epsilon
    assert low.epsilon > target
    found = accountant._smallest_steps_of(prefactor, target, chain, 1e-5, (1.0001, 1e4), "mironov", 1, 1)
    walked = next(k for k in range(1, 2000)
                  if accountant._certificate_of(prefactor, k, chain, 1e-5, (1.0001, 1e4), "mironov").epsilon <= target)
    assert found.steps == walked


@pytest.mark.parametrize("value", ["1e300", "-1e20"])
def test_an_init_mean_beyond_float32_is_refused(capsys, value):
    assert run_main("--config", LANGEVIN, "--dry-run", "--override", f"training.langevin.init_mean={value}") == 2
    one_line_error(capsys.readouterr().err, "training.langevin.init_mean", "float32")


# -- splits too small for the metrics --------------------------------------------------------------------

def test_a_split_too_small_for_the_membership_attacks_is_refused(make_config, tmp_path, capsys):
    """forget_split 0.9999 leaves one retain example: the attacks would be fit on one example a side."""
    path, _ = make_config("tiny-retain", {"dataset.forget_split": 0.9999, "unlearning.algorithm": "retrain",
                                          "unlearning.iteration": None})
    assert run_main("--config", path, "--dry-run") == 2
    one_line_error(capsys.readouterr().err, "dataset.forget_split: 0.9999", "1 retain", "at least 5")
    assert not (tmp_path / "logs").exists()
    off = {"evaluation.mia.svc.enabled": False, "evaluation.mia.threshold.enabled": False}
    path, _ = make_config("tiny-retain-no-mia", {"dataset.forget_split": 0.9999, "unlearning.algorithm": "retrain",
                                                 "unlearning.iteration": None, **off})
    assert run_main("--config", path, "--dry-run") == 0


# -- certificates in the far tail ----------------------------------------------------------------------

MODEL_CLIPPING = REPO / "baselines_runs" / "mini-mnist5k" / "mc-random-d142-g1234.yaml"


def dry_plan(capsys, config, *overrides) -> dict:
    import json

    args = [a for o in overrides for a in ("--override", o)]
    assert run_main("--config", config, "--dry-run", *args) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_model_clipping_never_states_a_delta_of_zero(capsys):
    """model_clip 1e-4: the true delta after one step is ~1e-549; float64 made it 0.0, a pure-DP claim."""
    plan = dry_plan(capsys, MODEL_CLIPPING, "unlearning.contractive_coefficients.model_clip=1e-4")
    assert plan["certified_delta"] == 1e-300 and plan["noisy_steps"] == 1


def test_model_clipping_at_epsilon_1000_certifies_instead_of_a_math_range_error(capsys):
    plan = dry_plan(capsys, MODEL_CLIPPING, "unlearning.contractive_coefficients.epsilon_target=1000")
    assert plan["certified_epsilon"] == 1000 and 0 < plan["certified_delta"] <= 1e-5


def test_dp_sgd_at_epsilon_1000_says_what_is_out_of_range(make_config, capsys):
    path, _ = make_config("dpsgd-1000", {"unlearning.algorithm": "dp-sgd", "unlearning.iteration": None,
                                         "training.dp_sgd": {"l2_norm_clip": 1.0, "target_epsilon": 1000,
                                                             "target_delta": 1e-5}})
    assert run_main("--config", path, "--dry-run") == 2
    err = capsys.readouterr().err
    one_line_error(err, "epsilon 1000 for a group of", "below the smallest delta", "use a group epsilon below")
    assert "got 0.0" not in err
