"""Config files mean what they say: YAML 1.2, the forms that YAML 1.1 reads otherwise refused
with the key, duplicate keys refused, `<<` merges, and hostile sizes bounded."""

from __future__ import annotations

import codecs
import re
import resource
import subprocess
import sys
import time

import pytest

from src.config import load_config, read_yaml, run_id
from src.config_yaml import MAX_CONFIG_BYTES, load_text
from src.errors import ConfigError
from tests.conftest import QUICKSTART, REPO, run_main

TEXT = QUICKSTART.read_text()


def with_line(old: str, new: str) -> str:
    assert TEXT.count(old) == 1, old
    return TEXT.replace(old, new)


def refusal(tmp_path, text: str, overrides=()) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, list(overrides))
    return str(info.value)


# -- YAML 1.1 forms: each refused with its dotted key, line and both readings -------------------------

@pytest.mark.parametrize("old, new, key, readings", [
    ("seed: 142", "seed: 0142", "dataset.seed", ("98", "142")),           # octal in 1.1
    ("epochs: 30", "epochs: 010", "training.epochs", ("8", "10")),
    ("epochs: 30", "epochs: 1_0", "training.epochs", ("10", "'1_0'")),    # a string in 1.2
    ("epochs: 30", "epochs: 0x1F", "training.epochs", ("31",)),           # hex: write decimals
    ("pretrained: auto", "pretrained: no", "training.pretrained", ("False", "'no'")),
    ("pretrained: auto", "pretrained: off", "training.pretrained", ("False", "'off'")),
    ("global_seed: 1234", "global_seed: 20:34", "global_seed", ("1234", "'20:34'")),  # base 60 in 1.1
])
def test_forms_that_yaml_1_1_reads_otherwise_are_refused_with_the_key(tmp_path, old, new, key, readings):
    message = refusal(tmp_path, with_line(old, new))
    line = next(i for i, text in enumerate(with_line(old, new).splitlines(), 1) if text.strip() == new)
    assert f"{key} (line {line}, value {new.split(': ')[1]}) is ambiguous" in message
    for reading in readings:
        assert reading in message


@pytest.mark.parametrize("override, key", [("dataset.seed=0142", "dataset.seed"), ("training.epochs=1_0", "training.epochs"),
                                           ("training.pretrained=no", "training.pretrained"),
                                           ("dataset.input_shape=[28, 28, 01]", "[2]")])
def test_the_same_forms_are_refused_in_overrides(override, key):
    with pytest.raises(ConfigError, match="is ambiguous") as info:
        load_config(QUICKSTART, [override])
    assert f"override '{override}'" in str(info.value) and key in str(info.value)


def test_yaml_1_2_values_read_as_before():
    config = load_config(QUICKSTART, ["unlearning.delta=1e-6", "training.max_lr=.5", "dataset.seed=0",
                                      "training.pretrained=false", "name='0142'", "unlearning.init_sigma=1.0e-3"])
    assert config.unlearning.delta == 1e-6 and config.training.max_lr == 0.5 and config.dataset.seed == 0
    assert config.training.pretrained is False and config.name == "0142" and config.unlearning.init_sigma == 1e-3


def test_explicit_tags_follow_yaml_1_2_too():
    for text in ("a: !!int 0142", "a: !!bool yes", "a: !!float 1_0.5"):
        with pytest.raises(ConfigError, match="is not a YAML 1.2"):
            load_text(text, "x.yaml")


def test_the_merge_key_works_and_duplicates_stay_refused(tmp_path):
    merged = with_line("post_unlearning:\n  optim: SGD\n  momentum: 0\n", "post_unlearning:\n  <<: *sgd\n")
    merged = merged.replace("  optim: SGD\n  momentum: 0\n  lr_schedule: constant\n",
                            "  <<: &sgd {optim: SGD, momentum: 0}\n  lr_schedule: constant\n", 1)
    path = tmp_path / "merged.yaml"
    path.write_text(merged)
    assert "<<" in merged and run_id(load_config(path)) == run_id(load_config(QUICKSTART))
    # A key given beside a merge overrides the merged one: not a duplicate.
    assert load_text("a: &a {x: 1, y: 2}\nb:\n  <<: *a\n  y: 3\n", "m.yaml")["b"] == {"x": 1, "y": 3}
    for text, key in (("a: 1\nb: 2\na: 3\n", "'a' at line 3 (first given at line 1)"),
                      ("<<: {a: 1}\n<<: {b: 2}\n", "'<<' at line 2")):
        with pytest.raises(ConfigError, match=re.escape(f"duplicate key {key}")):
            load_text(text, "d.yaml")


def test_cli_refuses_an_ambiguous_value_in_one_line(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(with_line("seed: 142", "seed: 0142"))
    assert run_main("--config", path, "--dry-run") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dataset.seed (line 8, value 0142) is ambiguous" in err


# -- encodings ------------------------------------------------------------------------------------------

def test_utf16_and_utf8_bom_files_read_like_utf8_and_other_bytes_are_refused(tmp_path):
    expected = read_yaml(QUICKSTART)
    for name, data in (("utf16.yaml", TEXT.encode("utf-16")), ("utf16be.yaml", codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be")),
                       ("bom.yaml", codecs.BOM_UTF8 + TEXT.encode())):
        (tmp_path / name).write_bytes(data)
        assert read_yaml(tmp_path / name) == expected, name
    (tmp_path / "latin1.yaml").write_bytes(with_line("name: quickstart", "name: caf\xe9").encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml: not UTF-8 text \(byte 0xe9 at line 48\)"):
        read_yaml(tmp_path / "latin1.yaml")


def test_a_directory_is_not_a_config(tmp_path):
    with pytest.raises(ConfigError, match="is a directory, not a YAML file"):
        read_yaml(tmp_path)


# -- hostile sizes --------------------------------------------------------------------------------------

def alias_bomb(levels: int = 9) -> str:
    """About 300 bytes that expand to 9**9 (387 million) strings."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def run_limited(args, timeout=60):
    """A child with 4 GB of address space: a bomb that expands cannot take the machine with it."""
    limit = 4 << 30

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    start = time.monotonic()
    result = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                            preexec_fn=cap)
    return result, time.monotonic() - start


def test_an_alias_bomb_is_refused_at_once(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(TEXT + alias_bomb())
    assert path.stat().st_size < 2000
    result, seconds = run_limited(["experiment.py", "--config", str(path), "--dry-run"])
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "expands (aliases followed) to more than 10000 values" in result.stderr
    assert len(result.stderr) < 500
    # The launcher reads every config before any job starts: it refuses it too, and goes on.
    folder = tmp_path / "exps"
    folder.mkdir()
    (folder / "bomb.yaml").write_text(path.read_text())
    launched, _ = run_limited(["run_exp.py", "-e", str(folder), "--dry-run", "--run-logs", str(tmp_path / "rl")])
    assert launched.returncode == 1 and "expands (aliases followed)" in launched.stdout + launched.stderr


def test_an_alias_that_contains_itself_and_deep_nesting_are_refused():
    with pytest.raises(ConfigError, match="an alias that contains itself"):
        load_text("a: &a [1, *a]\n", "r.yaml")
    with pytest.raises(ConfigError, match="nested more than 32 levels"):
        load_text("a: " + "[" * 40 + "]" * 40, "deep.yaml")
    with pytest.raises(ConfigError, match="more than 10000 values"):
        load_text("a: [" + ", ".join(["1"] * 10001) + "]", "wide.yaml")


def test_a_huge_file_and_a_huge_value_are_refused_quickly_with_short_messages(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text(with_line("name: quickstart", "name: " + "x" * 5_000_000))
    start = time.monotonic()
    with pytest.raises(ConfigError, match=f"larger than {MAX_CONFIG_BYTES // 1024} KB") as info:
        load_config(big)
    assert time.monotonic() - start < 5 and len(str(info.value)) < 300
    # Under the file bound, a long value is refused by the schema and quoted cut short.
    long_name = tmp_path / "long.yaml"
    long_name.write_text(with_line("name: quickstart", "name: " + "x" * 200_000))
    with pytest.raises(ConfigError, match=r"name: got 'xxx.*\.\.\. \(200002 characters\); must be at most") as info:
        load_config(long_name)
    assert len(str(info.value)) < 400
    with pytest.raises(ConfigError) as info:
        load_config(QUICKSTART, ["unknown_key=" + "y" * 100_000])
    assert len(str(info.value)) < 2000


def test_cli_on_a_huge_value_prints_a_short_error(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(with_line("name: quickstart", "name: " + "x" * 5_000_000))
    assert run_main("--config", path, "--dry-run") == 2
    assert len(capsys.readouterr().err) < 300
