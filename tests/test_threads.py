"""CPU thread defaults (src/threads.py): the cores a process may use, the choice by the
work's size, and what overrides it. No timing here: the speed is benchmarks/bench_epoch.py."""

from __future__ import annotations

import pytest

from src import threads
from src.models.model import ModelFactory
from src.models.work import forward_flops, training_step_flops

MNIST, CIFAR, FEATURES = (28, 28, 1), (32, 32, 3), (512,)


# -- cgroup quotas --------------------------------------------------------------------------


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_cpu_max_and_cfs_files_parse_to_cpus():
    assert threads.parse_cpu_max("max 100000\n") is None
    assert threads.parse_cpu_max("150000 100000\n") == 1.5
    assert threads.parse_cpu_max("400000 200000") == 2.0
    assert threads.parse_cfs("-1\n", "100000\n") is None
    assert threads.parse_cfs("250000\n", "100000\n") == 2.5


def test_cgroup_v2_quota_is_the_tightest_level_above_the_process(tmp_path):
    root = tmp_path / "cgroup"
    write(root / "cgroup.controllers", "cpu memory\n")
    write(root / "user.slice" / "cpu.max", "300000 100000\n")          # 3 CPUs for the slice
    write(root / "user.slice" / "job" / "cpu.max", "max 100000\n")     # none for the job itself
    proc = write(tmp_path / "proc_cgroup", "0::/user.slice/job\n")
    assert threads.cgroup_cpu_limit(proc, root) == 3.0
    write(root / "user.slice" / "job" / "cpu.max", "150000 100000\n")
    assert threads.cgroup_cpu_limit(proc, root) == 1.5


def test_cgroup_v1_cpu_controller_quota(tmp_path):
    root = tmp_path / "cgroup"
    write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "200000\n")
    write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us", "100000\n")
    write(root / "cpu,cpuacct" / "cpu.cfs_quota_us", "-1\n")
    write(root / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    proc = write(tmp_path / "proc_cgroup", "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/\n")
    assert threads.cgroup_cpu_limit(proc, root) == 2.0


def test_a_container_reads_its_own_root_when_its_path_is_not_mounted(tmp_path):
    root = tmp_path / "cgroup"
    write(root / "cgroup.controllers", "cpu\n")
    write(root / "cpu.max", "50000 100000\n")  # the container's own group is the mount's root
    proc = write(tmp_path / "proc_cgroup", "0::/kubepods/burstable/pod1/c1\n")
    assert threads.cgroup_cpu_limit(proc, root) == 0.5


def test_no_quota_or_no_cgroup_means_no_limit(tmp_path):
    root = tmp_path / "cgroup"
    write(root / "cgroup.controllers", "cpu\n")
    write(root / "cpu.max", "max 100000\n")
    assert threads.cgroup_cpu_limit(write(tmp_path / "p", "0::/\n"), root) is None
    assert threads.cgroup_cpu_limit(tmp_path / "absent", root) is None
    assert threads.cgroup_cpu_limit(write(tmp_path / "q", "garbage\n"), tmp_path / "nothing") is None


def test_available_cores_is_the_affinity_cut_down_to_the_quota():
    assert threads.available_cores(affinity=8, quota=None) == 8
    assert threads.available_cores(affinity=8, quota=2.9) == 2   # rounded down: a third thread would be throttled
    assert threads.available_cores(affinity=8, quota=0.5) == 1
    assert threads.available_cores(affinity=2, quota=16.0) == 2
    assert threads.available_cores() >= 1  # this machine's, whatever it is


def test_omp_num_threads_is_read_as_a_ceiling():
    assert threads.environment_ceiling({}) is None
    assert threads.environment_ceiling({"OMP_NUM_THREADS": "4"}) == 4
    assert threads.environment_ceiling({"OMP_NUM_THREADS": "4,2"}) == 4  # nested levels: the outer one
    assert threads.environment_ceiling({"OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "2"}) == 2
    assert threads.environment_ceiling({"OMP_NUM_THREADS": "zero"}) is None
    assert threads.environment_ceiling({"OMP_NUM_THREADS": "0"}) is None


# -- the work's size ----------------------------------------------------------------------


def test_forward_flops_match_the_layers_closed_forms():
    # tiny_net: Dense 784 -> 5 -> 10, two flops per multiply-add
    assert forward_flops(ModelFactory.create_model("tiny_net", 10, MNIST, seed=0), MNIST) == 2 * (784 * 5 + 5 * 10)
    # three_layer_net on features: 512 -> 32 -> 32 -> 10
    assert forward_flops(ModelFactory.create_model("three_layer_net", 10, FEATURES, seed=0), FEATURES) == \
        2 * (512 * 32 + 32 * 32 + 32 * 10)
    # tiny_net_cifar: conv 3->32 on 32x32, conv 32->64 on 16x16 (3x3 kernels), dense 64 -> 10
    conv = 2 * (32 * 32 * 32 * 3 * 9 + 16 * 16 * 64 * 32 * 9)
    assert forward_flops(ModelFactory.create_model("tiny_net_cifar", 10, CIFAR, seed=0), CIFAR) == conv + 2 * 64 * 10
    model = ModelFactory.create_model("tiny_net", 10, MNIST, seed=0)
    assert training_step_flops(model, MNIST, 128) == 3 * 128 * forward_flops(model, MNIST)


def cifar_step():
    return training_step_flops(ModelFactory.create_model("tiny_net_cifar", 10, CIFAR, seed=0), CIFAR, 128)


def mnist_step():
    return training_step_flops(ModelFactory.create_model("tiny_net", 10, MNIST, seed=0), MNIST, 128)


def test_tiny_models_take_one_thread_and_convolutions_take_the_cores():
    for cores in (1, 2, 64):
        budget = threads.ThreadBudget(cores=cores, ceiling=None, requested=None)
        assert budget.choose(mnist_step()) == 1
        dp_sgd = training_step_flops(ModelFactory.create_model("three_layer_net", 10, FEATURES, seed=0), FEATURES, 128)
        assert budget.choose(dp_sgd) == 1
    assert threads.ThreadBudget(2, None, None).choose(cifar_step()) == 2
    # many cores: one thread per FLOPS_PER_THREAD of a step, never all 64 on 4e9 flops
    many = threads.ThreadBudget(64, None, None).choose(cifar_step())
    assert many == int(cifar_step() // threads.FLOPS_PER_THREAD) and 2 <= many < 64


def test_ceilings_cap_the_choice_and_requests_override_everything():
    assert threads.ThreadBudget(cores=16, ceiling=1, requested=None).choose(cifar_step()) == 1  # run_exp's share
    assert threads.ThreadBudget(cores=1, ceiling=8, requested=None).choose(cifar_step()) == 1   # quota beats the env
    assert threads.ThreadBudget(cores=4, ceiling=None, requested=3).choose(mnist_step()) == 3
    assert threads.ThreadBudget(cores=4, ceiling=1, requested=4).choose(None) == 4  # asked for: above the ceiling
    assert threads.ThreadBudget(cores=2, ceiling=None, requested=3).choose(mnist_step()) == 2  # never above the cores
    assert threads.ThreadBudget(cores=6, ceiling=4, requested=None).choose(None) == 4  # GPU runs: the whole limit


def test_prepare_makes_waiting_threads_sleep_unless_the_user_chose():
    env = {}
    budget = threads.prepare(environ=env)
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and budget.requested is None and budget.ceiling is None
    env = {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "3"}
    budget = threads.prepare(requested=None, ceiling=2, environ=env)
    assert env["OMP_WAIT_POLICY"] == "ACTIVE" and budget.ceiling == 2
    assert threads.prepare(ceiling=5, environ={"OMP_NUM_THREADS": "3"}).ceiling == 3
    assert threads.prepare(requested=2, environ={}).requested == 2


# -- experiment.py applies it ----------------------------------------------------------------


@pytest.fixture
def recorded_threads(monkeypatch):
    import torch

    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # restored afterwards
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    return calls


@pytest.mark.parametrize("flags, config_threads, expected", [
    ([], None, 1),                           # tiny_net: one thread on any machine
    (["--threads", "3"], None, 3),           # --threads is exact (up to the cores)
    ([], 2, 2),                              # so is the config's threads:
    (["--threads", "3"], 2, 3),              # and --threads wins over the config
    (["--threads", "10000"], None, 10000),   # cut to the cores: never 10,000 OpenMP threads
    (["--max-threads", "1"], None, 1),
])
def test_experiment_sets_the_chosen_threads(make_config, recorded_threads, flags, config_threads, expected):
    import experiment

    overrides = {"device": "cpu", "training.pretrained": False}
    if config_threads:
        overrides["threads"] = config_threads
    path, _ = make_config("threads", overrides)
    assert experiment.main(["--config", str(path), "--pretrain-only", "--quiet", *flags]) == 0
    assert recorded_threads == [min(expected, threads.available_cores(quota=threads.cgroup_cpu_limit()))]


def test_thread_flags_refuse_non_positive_numbers(capsys):
    import experiment

    for bad in ("0", "-2", "two"):
        with pytest.raises(SystemExit) as exit_info:
            experiment.parse_args(["--threads", bad])
        assert exit_info.value.code == 2
        assert "expected a positive whole number" in capsys.readouterr().err


def test_freed_memory_is_kept_on_glibc_unless_the_user_tunes_malloc():
    import platform

    from src import allocator

    assert not allocator.keep_freed_memory({"MALLOC_TRIM_THRESHOLD_": "0"})
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert allocator.keep_freed_memory({})
