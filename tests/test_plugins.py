"""src/plugins.py: a user's class or function named as file.py:attr or package.module:attr,
and the one-line errors for every way that can fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from src import plugins, seeds
from src.errors import ConfigError

KEY = "unlearning.algorithm"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def refusal(spec: str, base_dir: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        plugins.resolve(spec, key=KEY, base_dir=base_dir)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{KEY}: ")
    return message


def test_a_file_path_is_relative_to_the_base_dir_and_loaded_once(tmp_path):
    write(tmp_path / "configs" / "mine" / "method.py", "VALUE = [1, 2]\n\ndef make():\n    return VALUE\n")
    base = tmp_path / "configs"
    make = plugins.resolve("mine/method.py:make", key=KEY, base_dir=base)
    assert make() == [1, 2]
    # the same file by another spelling: the same module, so the same objects
    again = plugins.resolve(f"{tmp_path}/configs/mine/../mine/method.py:VALUE", key=KEY, base_dir=tmp_path)
    assert again is make()
    assert plugins.canonical("mine/method.py:make", base_dir=base) == f"{(base / 'mine' / 'method.py').resolve()}:make"


def test_an_import_path_names_an_importable_module():
    assert plugins.resolve("src.seeds:derive_seed", key=KEY, base_dir=None) is seeds.derive_seed
    assert plugins.canonical("src.seeds:derive_seed", base_dir=Path("/elsewhere")) == "src.seeds:derive_seed"


def test_only_values_with_a_colon_are_specs():
    assert plugins.is_spec("a.py:B") and plugins.is_spec("pkg.mod:B")
    assert not plugins.is_spec("iteration") and not plugins.is_spec(None) and not plugins.is_spec(3)


def test_a_missing_file_names_the_key_the_value_and_the_forms(tmp_path):
    message = refusal("nowhere.py:Method", tmp_path)
    assert "'nowhere.py:Method'" in message and str(tmp_path / "nowhere.py") in message
    assert "does not exist" in message and "package.module:attribute" in message


def test_a_missing_attribute_lists_what_the_file_defines(tmp_path):
    write(tmp_path / "m.py", "class Mine:\n    pass\n\ndef helper():\n    pass\n")
    message = refusal("m.py:Theirs", tmp_path)
    assert "has no attribute 'Theirs'" in message and "Mine, helper" in message


def test_an_error_inside_the_users_file_is_one_line_with_its_line(tmp_path):
    write(tmp_path / "broken.py", "import math\n\nx = 1 / 0\n")
    message = refusal("broken.py:x", tmp_path)
    assert "importing" in message and "(line 3)" in message and "ZeroDivisionError: division by zero" in message
    write(tmp_path / "syntax.py", "def f(:\n    pass\n")
    message = refusal("syntax.py:f", tmp_path)
    assert "SyntaxError" in message and "(line 1)" in message
    # a failed file is not half-registered: fixed, it loads
    write(tmp_path / "broken.py", "x = 2\n")
    assert plugins.resolve("broken.py:x", key=KEY, base_dir=tmp_path) == 2


def test_a_missing_module_and_a_module_that_fails(tmp_path, monkeypatch):
    message = refusal("no_such_package.methods:Method", tmp_path)
    assert "no module named 'no_such_package'" in message and "PYTHONPATH" in message
    write(tmp_path / "pkg_fails" / "__init__.py", "import no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    message = refusal("pkg_fails:Method", tmp_path)
    assert "importing pkg_fails failed: ModuleNotFoundError" in message and "no_such_dependency" in message


def test_malformed_specs(tmp_path):
    assert "names no attribute" in refusal("method.py:", tmp_path)
    assert "names no file or module" in refusal(":Method", tmp_path)
    write(tmp_path / "data.txt", "x")
    assert "not a Python file" in refusal("./data.txt:x", tmp_path)
