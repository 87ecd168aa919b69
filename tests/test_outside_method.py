"""An unlearning method from the user's own file (`unlearning.algorithm: file.py:Class` or
`package.module:Class`): planned, run, measured and launched like a built-in, and never
certified, even when its class claims a certificate (docs/methods.md)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from src.config import load_config, run_id
from src.errors import ConfigError
from src.registry import UNLEARNING_ALGORITHMS
from src.runner import make_plan
from tests.conftest import REPO, run_main

METHODS = REPO / "tests" / "data" / "methods"
MAX_ENTROPY = "methods/max_entropy.py:MaxEntropy"  # relative to the config file's directory


def user_config(make_config, tmp_path, name, algorithm, **overrides):
    """A tiny mnist_5k config in tmp_path/exps/ beside a copy of the user's method files."""
    shutil.copytree(METHODS, tmp_path / "exps" / "methods", dirs_exist_ok=True)
    return make_config(name, {"unlearning.algorithm": algorithm, **overrides}, directory=tmp_path / "exps")[0]


def dry_run(path, capsys) -> dict:
    assert run_main("--config", path, "--dry-run") == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_from_a_file_path_relative_to_the_config_with_its_own_section(make_config, tmp_path, capsys):
    path = user_config(make_config, tmp_path, "mine", MAX_ENTROPY, **{"unlearning.max_entropy.weight": 0.25})
    config = load_config(path)
    absolute = f"{(tmp_path / 'exps' / 'methods' / 'max_entropy.py').resolve()}:MaxEntropy"
    assert config.unlearning.algorithm == absolute  # the same file wherever the config is read again
    assert config.unlearning.max_entropy.weight == 0.25
    assert run_id(config).startswith("mine-") and config.to_dict()["unlearning"]["max_entropy"] == {"weight": 0.25}
    plan = dry_run(path, capsys)
    assert plan["algorithm"] == absolute and plan["certified_epsilon"] is None and not plan["certificate_valid"]
    # the section's own validation, with the key's name
    bad = user_config(make_config, tmp_path, "bad", MAX_ENTROPY, **{"unlearning.max_entropy.weight": -1})
    with pytest.raises(ConfigError, match=r"unlearning\.max_entropy\.weight: got -1"):
        load_config(bad)
    # left out, the section's default
    assert load_config(user_config(make_config, tmp_path, "default", MAX_ENTROPY)).unlearning.max_entropy.weight == 1
    # the file's code is part of the run's identity: edited, a new run id (the launcher re-runs it)
    method_file, before = tmp_path / "exps" / "methods" / "max_entropy.py", run_id(config)
    method_file.write_text(method_file.read_text() + "\n# tuned\n")
    assert run_id(load_config(path)) != before


def test_docs_show_the_example_file_as_it_is():
    page = (REPO / "docs" / "methods.md").read_text()
    assert "```python\n" + (METHODS / "max_entropy.py").read_text() + "```" in page


def test_from_an_import_path(make_config, capsys):
    path, _ = make_config("imported", {"unlearning.algorithm": "tests.data.methods.max_entropy:MaxEntropy"})
    config = load_config(path)
    assert config.unlearning.algorithm == "tests.data.methods.max_entropy:MaxEntropy"
    cls = UNLEARNING_ALGORITHMS.get(config.unlearning.algorithm)
    assert cls.__name__ == "MaxEntropy" and cls.name == "max_entropy" and not UNLEARNING_ALGORITHMS.is_builtin(cls)
    assert make_plan(config).privacy.certified_epsilon is None
    assert dry_run(path, capsys)["certificate_invalid_because"][0] == "empirical method"


def test_a_run_gets_the_forgetting_metrics_and_is_never_certified(make_config, tmp_path):
    """The method claims epsilon 0.01 in its plan, its certificate row and its logged rows:
    none of it survives; its other rows and every metric of a built-in run are there."""
    path = user_config(make_config, tmp_path, "claims", "methods/claims_certificate.py:ClaimsCertificate",
                       **{"unlearning.max_lr": 0.01, "unlearning.weight_decay": 0})
    assert run_main("--config", path, "--quiet") == 0
    (run_dir,) = (tmp_path / "logs").glob("claims-*")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["finished"] is True
    assert summary["certified_epsilon"] is None and summary["certified_delta"] is None
    assert summary["certificate_valid"] is False and summary["certificate"]["epsilon"] is None
    assert summary["plan"]["certified_epsilon"] is None and "remarks" not in summary["plan"]
    assert any("outside method" in reason for reason in summary["plan"]["certificate_invalid_because"])
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["claimed_at_epoch"] for r in rows if "claimed_at_epoch" in r] == [1, 2]
    assert not any(r.get("certified_epsilon") == 0.01 or r.get("certificate_valid") is True for r in rows)
    # the forgetting metrics of every run
    evaluation = summary["evaluation"]
    assert {"forget", "retain", "val", "test"} <= set(evaluation["accuracy"])
    assert 0 <= evaluation["mia_efficacy"] <= 1 and evaluation["mia_threshold"] and "tow" in evaluation
    # the logged config reads again to the same file and run id
    assert run_id(load_config(run_dir / "config.yaml")) == run_dir.name


def test_an_outside_method_serves_no_stream_of_requests(make_config, tmp_path):
    """Even one that claims it may (sequential_requests): a stream composes certificates."""
    path = user_config(make_config, tmp_path, "stream", "methods/claims_certificate.py:ClaimsCertificate",
                       **{"requests.num_requests": 2})
    with pytest.raises(ConfigError, match="cannot serve a stream of deletion requests"):
        make_plan(load_config(path))


def test_the_audit_measures_an_outside_method_with_noisy_steps(make_config, tmp_path, capsys):
    """Chains of its noisy phase run as ensembles; the audit reports a lower bound and, as the
    method is never certified, no certified epsilon to hold it against."""
    from src.audit.__main__ import main as audit_main

    path = user_config(make_config, tmp_path, "audited", "methods/noisy_clipping.py:NoisyClipping")
    code = audit_main(["--config", str(path), "--out", str(tmp_path / "audits"), "--quiet", "--chains", "12"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert code == 0 and line.startswith("certified epsilon none, empirical lower bound "), line
    (result,) = (tmp_path / "audits").glob("*/audit.json")
    result = json.loads(result.read_text())
    assert result["certified_epsilon"] is None and result["noisy_steps"] > 0 and result["chains_per_world"] == 12
    assert result["lower_bound"] >= 0 and not result["exceeds_certificate"]


@pytest.mark.parametrize("algorithm, expected", [
    ("methods/nowhere.py:Method", "methods/nowhere.py does not exist"),
    ("methods/max_entropy.py:MinEntropy", "has no attribute 'MinEntropy' (it defines: MaxEntropy, MaxEntropyConfig)"),
    ("methods/broken.py:Method", "importing"),
    ("methods/claims_certificate.py:make_method", "is a function, not a class implementing"),
    ("methods/claims_certificate.py:NotAMethod", "is the class NotAMethod, not a class implementing"),
    ("methods/builtin_name.py:Method", "its name 'ft' is a built-in method's"),
    ("no_such_package.methods:Method", "no module named 'no_such_package'"),
    ("methods/max_entropy.py:", "names no attribute"),
])
def test_bad_specs_are_one_line_errors_with_exit_2(make_config, tmp_path, capsys, algorithm, expected):
    (tmp_path / "exps" / "methods").mkdir(parents=True)
    (tmp_path / "exps" / "methods" / "broken.py").write_text("import no_such_dependency\n")
    (tmp_path / "exps" / "methods" / "builtin_name.py").write_text(
        "from src.unlearning.finetune import FineTune\n\nclass Method(FineTune):\n    name = 'ft'\n")
    path = user_config(make_config, tmp_path, "bad", algorithm)
    assert run_main("--config", path, "--dry-run") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: unlearning.algorithm: ") and expected in err, err
    assert algorithm in err
    assert not (tmp_path / "logs").exists()


def test_the_launcher_runs_a_folder_with_an_outside_method(make_config, tmp_path):
    """run_exp.py plans the folder (resolving the user's file from the config's directory,
    not the launcher's working directory) and runs it to a finished, uncertified result."""
    path = user_config(make_config, tmp_path, "launched", MAX_ENTROPY, **{"training.pretrained": False})
    cmd = [sys.executable, str(REPO / "run_exp.py"), "-e", str(path.parent), "-n", "0"]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].startswith("1 ok"), result.stdout
    (summary,) = (tmp_path / "logs").glob("launched-*/summary.json")
    summary = json.loads(summary.read_text())
    assert summary["finished"] and summary["certified_epsilon"] is None
    assert summary["plan"]["algorithm"].endswith("max_entropy.py:MaxEntropy")


def test_an_outside_subclass_of_a_vectorised_method_runs_its_members_one_by_one(make_config, tmp_path, capsys):
    """A subclass of FT may reduce over a batch in a way no member of theta [N, d] would: it
    runs an ensemble's members one after another unless its own class says `vectorised`."""
    (tmp_path / "exps" / "methods").mkdir(parents=True)
    (tmp_path / "exps" / "methods" / "my_ft.py").write_text(
        "from src.unlearning.finetune import FineTune\n\nclass Mine(FineTune):\n    name = 'my_ft'\n\n"
        "class Declared(FineTune):\n    name = 'declared_ft'\n    vectorised = True\n")
    for cls, path_taken in (("Mine", "sequential"), ("Declared", "vectorised")):
        path = user_config(make_config, tmp_path, cls.lower(), f"methods/my_ft.py:{cls}", seeds=2,
                           **{"unlearning.iteration": None})
        assert dry_run(path, capsys)["ensemble"]["unlearn"].startswith(path_taken)
