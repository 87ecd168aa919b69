"""feature_extractor.py on synthetic CIFAR pickles and a randomly initialised ResNet-18.

One run goes through the command line in a subprocess (as users run it); the other runs
call ``main`` in-process (all the script does) to save the interpreter start-up.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import datafiles
import feature_extractor as fe
from src.data.feature_files import feature_file_path, load_feature_file
from src.errors import UserError
from src.features import extract

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "feature_extractor.py"
N_TRAIN, N_TEST = 16, 8  # ResNet-18 at 224x224 costs 0.06-0.17 s per image on 2 shared CPU cores
BATCH = 10  # several batches and a partial last one


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("extractor")
    data = {
        "cifar10": datafiles.write_cifar10_pickles(root / "data", N_TRAIN, N_TEST, seed=0),
        "cifar100": datafiles.write_cifar100_pickles(root / "data", N_TRAIN, N_TEST, seed=1),
    }
    import torchvision

    torch.manual_seed(0)
    weights = root / "resnet18_random.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    return root, data, weights


def _args(root, out, weights, dataset):
    return ["--dataset", dataset, "--root", str(root / "data"), "--out", str(out),
            "--weights", str(weights), "--device", "cpu", "--batch-size", str(BATCH)]


@pytest.fixture(scope="module")
def cli_run(inputs):
    root, _, weights = inputs
    out = root / "out_cli"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(SCRIPT), *_args(root, out, weights, "cifar10")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    return out, proc, time.perf_counter() - t0


def _check_files(out, name, data):
    for train, split, n in ((True, "train", N_TRAIN), (False, "test", N_TEST)):
        path = feature_file_path(out, name, train)
        assert path == out / f"{name}_features" / f"{name}_{split}_features.pt"
        features, labels = load_feature_file(path)
        assert features.shape == (n, 512) and features.dtype == torch.float32
        assert labels.dtype == torch.int64
        np.testing.assert_array_equal(labels.numpy(), data[name][split][1])  # torchvision order
        assert torch.isfinite(features).all() and features.std() > 0


def test_cli_writes_reference_format_and_place(inputs, cli_run):
    _, data, _ = inputs
    out, proc, seconds = cli_run
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    _check_files(out, "cifar10", data)
    assert str(feature_file_path(out, "cifar10", True)) in proc.stdout
    assert f"dataset.features_root: {out.resolve()}" in proc.stdout
    # the synthetic files are not the official release: read with a one-line warning each
    assert "warning:" in proc.stderr and "not the official release" in proc.stderr
    print(f"CLI run, {N_TRAIN + N_TEST} images at 224x224 on CPU incl. start-up: {seconds:.1f} s")


def test_features_identical_across_runs_and_cifar100(inputs, cli_run, capsys):
    root, data, weights = inputs
    out_cli = cli_run[0]
    out_both, out_c100 = root / "out_both", root / "out_c100"
    t0 = time.perf_counter()
    assert fe.main(_args(root, out_both, weights, "both")) == 0
    t1 = time.perf_counter()
    assert fe.main(_args(root, out_c100, weights, "cifar100")) == 0
    print(f"in-process: both datasets {t1 - t0:.1f} s, cifar100 {time.perf_counter() - t1:.1f} s", file=sys.stderr)
    _check_files(out_both, "cifar10", data)
    _check_files(out_both, "cifar100", data)
    _check_files(out_c100, "cifar100", data)
    for name, first, second in (("cifar10", out_cli, out_both), ("cifar100", out_both, out_c100)):
        for train in (True, False):
            a, la = load_feature_file(feature_file_path(first, name, train))
            b, lb = load_feature_file(feature_file_path(second, name, train))
            assert torch.equal(a, b) and torch.equal(la, lb), f"{name} train={train} differs between runs"


def test_features_are_in_image_order(inputs, cli_run):
    root, data, weights = inputs
    features, _ = load_feature_file(feature_file_path(cli_run[0], "cifar10", True))
    model = extract.load_backbone(str(weights)).eval()
    images = data["cifar10"]["train"][0]
    picks = [0, 9, 10, 15]  # first, batch edges, last
    one_by_one = torch.cat([extract.extract(model, images[i : i + 1], torch.device("cpu"), extract.CIFAR_MEAN_STD["cifar10"], 1)
                            for i in picks])
    torch.testing.assert_close(one_by_one, features[picks], rtol=1e-4, atol=1e-4)


def test_preprocess_reproduces_pil_resize_exactly():
    from PIL import Image
    from torchvision import transforms as T

    mean, std = extract.CIFAR_MEAN_STD["cifar100"]
    reference = T.Compose([T.Resize(224), T.ToTensor(), T.Normalize(mean, std)])  # the reference's transform
    images = np.random.default_rng(0).integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    expected = torch.stack([reference(Image.fromarray(a)) for a in images])
    got = extract.preprocess(torch.from_numpy(images), torch.tensor(mean), torch.tensor(std))
    assert got.shape == (6, 3, 224, 224)
    assert torch.equal(got, expected)


def test_imagenet_weights_offline_fail_fast_and_clearly(inputs, tmp_path, monkeypatch, capsys):
    # In-process (main() is all the script runs) with every connection refused, and an empty
    # torch hub so that no cached weights exist.
    root, _, _ = inputs
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    t0 = time.perf_counter()
    with datafiles.blocked_network():
        code = fe.main(["--dataset", "cifar10", "--root", str(root / "data"), "--out", str(tmp_path / "out"),
                        "--weights", "imagenet", "--device", "cpu"])
    assert time.perf_counter() - t0 < 30
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    error_lines = [line for line in err.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and error_lines[0].startswith("feature_extractor.py: error: --weights imagenet")
    line = error_lines[0]
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in line
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints") in line and "--weights PATH" in line
    assert not (tmp_path / "out").exists()


def test_bad_weights_files(inputs, tmp_path, capsys):
    root, _, _ = inputs
    missing = tmp_path / "nope.pth"
    assert fe.main(_args(root, tmp_path / "out", missing, "cifar10")) == 2
    assert f"--weights {missing}: no such file" in capsys.readouterr().err
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    assert fe.main(_args(root, tmp_path / "out", wrong, "cifar10")) == 2
    err = capsys.readouterr().err
    assert "not a torchvision resnet18 state_dict" in err and "Traceback" not in err
    with pytest.raises(UserError):
        fe.main([*_args(root, tmp_path / "out", wrong, "cifar10"), "--debug"])


def test_missing_cifar_reported_before_any_compute(tmp_path, capsys, inputs):
    _, _, weights = inputs
    with datafiles.blocked_network():
        code = fe.main(["--dataset", "cifar100", "--root", str(tmp_path / "none"), "--out", str(tmp_path / "out"),
                        "--weights", str(weights), "--device", "cpu"])
    assert code == 2
    err = capsys.readouterr().err
    assert "cifar100 files not found" in err and "cifar-100-python.tar.gz" in err


@pytest.mark.parametrize("flag, expected", [([], "cifar"), (["--normalization", "imagenet"], "imagenet")])
def test_normalization_choice(inputs, tmp_path, monkeypatch, flag, expected):
    root, _, weights = inputs
    seen = []

    def fake_extract(model, images, device, mean_std, batch_size, num_workers=0, desc=""):
        seen.append((desc, mean_std))
        return torch.zeros(len(images), 512)

    monkeypatch.setattr(extract, "extract", fake_extract)
    assert fe.main([*_args(root, tmp_path / "out", weights, "both"), *flag]) == 0
    assert [d for d, _ in seen] == ["cifar10 train", "cifar10 test", "cifar100 train", "cifar100 test"]
    for desc, mean_std in seen:
        want = extract.CIFAR_MEAN_STD[desc.split()[0]] if expected == "cifar" else extract.IMAGENET_MEAN_STD
        assert mean_std == want


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_requested_without_cuda(tmp_path, capsys, inputs):
    root, _, weights = inputs
    args = _args(root, tmp_path / "out", weights, "cifar10")
    args[args.index("--device") + 1] = "cuda"
    assert fe.main(args) == 2
    assert "no CUDA device" in capsys.readouterr().err


@pytest.mark.parametrize("name, classes", [("cifar10", 10), ("cifar100", 100)])
def test_a_three_layer_net_experiment_runs_on_the_extracted_features(inputs, cli_run, name, classes, tmp_path):
    """The extractor's output is what the feature datasets read (issue #7)."""
    from src.config import load_config
    from src.runner import make_plan, resolve_device, run
    from src.training.trainer import Console

    root, _, weights = inputs
    out = root / f"out_experiment_{name}"
    assert fe.main(_args(root, out, weights, name)) == 0
    config = load_config(REPO / "configs" / "quickstart_mnist5k.yaml", [
        f"dataset.name={name}_feature", f"dataset.features_root={out}", "dataset.input_shape=[512]",
        "model.name=three_layer_net", f"model.n_classes={classes}", "training.epochs=2", "training.pretrained=false",
        "unlearning.epochs=1", "unlearning.iteration.grad_clip=100", f"logs_dir={tmp_path}",
        f"checkpoints_dir={tmp_path / 'ckpt'}"])
    plan = make_plan(config)
    assert plan.num_parameters == {10: 17802, 100: 20772}[classes]
    assert plan.sizes.pool == N_TRAIN and plan.sizes.test == N_TEST
    summary = run(config, None, resolve_device("cpu"), Console(quiet=True))
    assert summary["finished"] and 0.0 <= summary["test_accuracy"] <= 1.0
    assert summary["certificate"]["certified_epsilon"] == pytest.approx(1.0)


def test_help_imports_no_torch():
    # --help must be instant: the CLI parses arguments before importing the extractor.
    code = "import sys, feature_extractor as fe\ntry:\n    fe.main(['--help'])\nexcept SystemExit:\n    pass\n" \
           "assert 'torch' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0 and "--dataset" in result.stdout, result.stderr
