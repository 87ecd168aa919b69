"""Reading experiment YAML so that a file means one thing, whatever reads it.

PyYAML implements YAML 1.1, where `seed: 0142` is octal 98, `epochs: 1_0` is 10 and
`pretrained: no` is false; a YAML 1.2 reader (and a researcher) sees 142, the string
"1_0" and the string "no". The reference code read its configs with PyYAML, so neither
reading can be chosen silently: scalars that the two versions read differently are
refused with the key, the line and both readings, and everything else is read by the
YAML 1.2 core schema. For what is left the two agree, except that YAML 1.1 reads `1e-5`
as a string, which the schema converted to the same number anyway. Hexadecimal, octal and
binary integers are refused too: write decimals.

The merge key `<<` works, duplicate keys are refused, and hostile input is bounded
before anything is built from it: the file size, the number of nodes once aliases are
expanded (an alias bomb of 1 KB expands to billions), the nesting depth, and the length
of any value quoted back in a message.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, SequenceNode

from src.errors import ConfigError

# A reference config is about 1.5 KB and 60 nodes; these bounds leave a wide margin.
MAX_CONFIG_BYTES = 256 * 1024
MAX_NODES = 10_000  # after alias expansion
MAX_DEPTH = 32
MAX_SHOWN = 60  # characters of a value quoted in a message

INT_TAG = "tag:yaml.org,2002:int"
FLOAT_TAG = "tag:yaml.org,2002:float"
BOOL_TAG = "tag:yaml.org,2002:bool"
NULL_TAG = "tag:yaml.org,2002:null"
MERGE_TAG = "tag:yaml.org,2002:merge"
AMBIGUOUS_TAG = "tag:certified-unlearning,2025:ambiguous"

# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution), with the
# forms below taken out first.
CORE_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
CORE_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
CORE_INT = re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$")
CORE_FLOAT = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")

# Plain (unquoted) scalars that YAML 1.1 (PyYAML) and YAML 1.2 read differently, or that
# hide a number in another base; `ambiguity` says how each is read and what to write.
LEADING_ZERO = re.compile(r"^[-+]?0[0-9]+$")
UNDERSCORE = re.compile(r"^(?=[^_]*_)[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?$")
PREFIXED = re.compile(r"^[-+]?0(?:[xX][0-9a-fA-F_]+|[oO][0-7_]+|[bB][01_]+)$")
SEXAGESIMAL = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
OLD_BOOL = re.compile(r"^(?:yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF)$")


def cut(text: str, limit: int = MAX_SHOWN) -> str:
    """`text` cut to `limit` characters: a message never echoes a huge value."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def shorten(value, limit: int = MAX_SHOWN) -> str:
    return cut(repr(value), limit)


def ambiguity(text: str) -> str | None:
    """Why a plain scalar is refused (its YAML 1.1 and 1.2 readings), or None."""
    if LEADING_ZERO.match(text):
        old, new = _yaml11(text), repr(int(text, 10))
        if old == new:
            return f"a leading zero marks an octal number in YAML 1.1 (here both read {new}); write it without"
        return (f"YAML 1.1 (PyYAML, the reference code) reads {old}, YAML 1.2 reads {new}; "
                "write the number without leading zeros")
    if PREFIXED.match(text):
        old, new = _yaml11(text), _yaml12_prefixed(text)
        readings = f"both YAML 1.1 and 1.2 read {old}" if old == new else f"YAML 1.1 reads {old}, YAML 1.2 reads {new}"
        return f"a number in another base ({readings}); write it in decimal"
    if UNDERSCORE.match(text):
        return f"YAML 1.1 reads {_yaml11(text)}, YAML 1.2 reads the string {text!r}; write it without underscores"
    if SEXAGESIMAL.match(text):
        return (f"YAML 1.1 reads the base-60 number {_yaml11(text)}, YAML 1.2 reads the string {text!r}; "
                "quote it if a string is meant")
    if OLD_BOOL.match(text):
        return (f"YAML 1.1 reads {_yaml11(text)}, YAML 1.2 reads the string {text!r}; write true or false, "
                "or quote it if a string is meant")
    return None


def _yaml11(text: str) -> str:
    try:
        value = yaml.safe_load(text)  # one short scalar
    except yaml.YAMLError:
        return f"{text!r}"
    return f"the string {value!r}" if isinstance(value, str) else repr(value)


def _yaml12_prefixed(text: str) -> str:
    body = text.lstrip("+-")[2:]
    base = {"x": 16, "o": 8}.get(text.lstrip("+-")[1].lower())
    if base is None or "_" in body:
        return f"the string {text!r}"
    return repr(int(text[0] + body if text[0] == "-" else body, base))


@dataclass(frozen=True)
class Ambiguous:
    """A refused scalar, kept until its dotted key is known."""

    text: str
    line: int
    reason: str


class ConfigLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core resolution, refused ambiguous forms, duplicate keys
    refused and the merge key `<<` kept."""

    yaml_implicit_resolvers: dict = {}

    def compose_document(self):
        self._nodes, self._depth = 0, 0
        return super().compose_document()

    def compose_node(self, parent, index):
        # Counted while composing, so that a file of many small values stops early too.
        self._nodes += 1
        self._depth += 1
        try:
            if self._nodes > MAX_NODES or self._depth > MAX_DEPTH:
                what = f"more than {MAX_NODES} values" if self._nodes > MAX_NODES else \
                    f"values nested more than {MAX_DEPTH} levels deep"
                raise ConfigError(f"line {self.peek_event().start_mark.line + 1}: {what}; an experiment "
                                  "config has far fewer")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


for _tag, _pattern, _first in (
    # First, so that the core patterns below never see these forms.
    (AMBIGUOUS_TAG, re.compile("|".join(p.pattern for p in (LEADING_ZERO, PREFIXED, UNDERSCORE, SEXAGESIMAL, OLD_BOOL))),
     list("-+0123456789.yYnNoO")),
    (NULL_TAG, CORE_NULL, ["~", "n", "N", ""]),
    (BOOL_TAG, CORE_BOOL, list("tTfF")),
    (INT_TAG, CORE_INT, list("-+0123456789")),
    (FLOAT_TAG, CORE_FLOAT, list("-+0123456789.")),
    (MERGE_TAG, re.compile(r"^(?:<<)$"), ["<"]),
):
    ConfigLoader.add_implicit_resolver(_tag, _pattern, _first)


def _ambiguous(loader, node):
    text = loader.construct_scalar(node)
    return Ambiguous(text, node.start_mark.line + 1, ambiguity(text))


def _strict(tag: str, pattern, construct, advice: str):
    """Explicitly tagged scalars (`!!int 0142`) follow YAML 1.2 too."""

    def constructor(loader, node):
        text = loader.construct_scalar(node)
        if not pattern.match(text) or ambiguity(text):
            raise ConfigError(f"line {node.start_mark.line + 1}: !!{tag} {shorten(text)} is not a YAML 1.2 {tag}; "
                              f"{advice}")
        return construct(loader, node)

    return constructor


def _construct_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        if key_node.tag == MERGE_TAG:
            key = "<<"
        else:
            key = loader.construct_object(key_node, deep=deep)
        try:
            first = seen.get(key)
        except TypeError:
            raise ConfigError(f"line {key_node.start_mark.line + 1}: a key must be a plain value, "
                              f"not a {type(key).__name__}") from None
        if first is not None:
            raise ConfigError(
                f"duplicate key {shorten(key)} at line {key_node.start_mark.line + 1} "
                f"(first given at line {first + 1}); each key may appear once"
            )
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


ConfigLoader.add_constructor(AMBIGUOUS_TAG, _ambiguous)
ConfigLoader.add_constructor(INT_TAG, _strict("int", CORE_INT, yaml.SafeLoader.construct_yaml_int,
                                                    "write a decimal integer"))
ConfigLoader.add_constructor(FLOAT_TAG, _strict("float", CORE_FLOAT, yaml.SafeLoader.construct_yaml_float,
                                                      "write a decimal number"))
ConfigLoader.add_constructor(BOOL_TAG, _strict("bool", CORE_BOOL, yaml.SafeLoader.construct_yaml_bool,
                                                     "write true or false"))
ConfigLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


# ---------------------------------------------------------------------------------------
# Bounds on what the composed document would expand to


def _children(node) -> list:
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def check_expansion(root) -> None:
    """Refuse a document that expands (aliases followed) to more than MAX_NODES nodes, is
    nested deeper than MAX_DEPTH, or refers to itself. Each distinct node is visited once,
    so a bomb is measured without being expanded."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            on_path.discard(key)
            if size[key] > MAX_NODES:
                raise ConfigError(f"line {node.start_mark.line + 1}: this value expands (aliases followed) to more "
                                  f"than {MAX_NODES} values; an experiment config needs far fewer")
            if depth[key] > MAX_DEPTH:
                raise ConfigError(f"line {node.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep")
            continue
        if key in size:
            continue
        if key in on_path:
            raise ConfigError(f"line {node.start_mark.line + 1}: an alias that contains itself")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in _children(node) if id(k) not in size)


def _find_ambiguous(data, path: str = ""):
    """(dotted key, Ambiguous) of the first refused scalar, in document order."""
    if isinstance(data, Ambiguous):
        return path or "(top level)", data
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, Ambiguous):
                return (f"{path}.{key.text}" if path else key.text) + " (as a key)", key
            found = _find_ambiguous(value, f"{path}.{key}" if path else str(key))
            if found:
                return found
    if isinstance(data, list):
        for i, value in enumerate(data):
            found = _find_ambiguous(value, f"{path}[{i}]")
            if found:
                return found
    return None


# ---------------------------------------------------------------------------------------
# Entry points


# What YAML may hold (1.2, 5.1): tab, line breaks and printable characters; anything else
# (BEL, NUL, ...) and the lone surrogates Python makes of undecodable command-line bytes.
NOT_PRINTABLE = re.compile("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")


def check_characters(text: str, source: str, lines: bool = True) -> None:
    """Refuse characters YAML does not allow, naming them (PyYAML's own error is a traceback)."""
    found = NOT_PRINTABLE.search(text)
    if found is None:
        return
    char = found.group()
    where = f" at line {text.count(chr(10), 0, found.start()) + 1}" if lines else ""
    if 0xDC80 <= ord(char) <= 0xDCFF:  # os.fsdecode's stand-in for a byte that is not UTF-8
        raise ConfigError(f"{source}: not UTF-8 text (byte 0x{ord(char) - 0xDC00:02x}{where}); "
                          "give the value as UTF-8")
    raise ConfigError(f"{source}: control character U+{ord(char):04X}{where} is not allowed in YAML; remove it "
                      "(write it as an escape such as \\a inside double quotes if a string needs it)")


def load_text(text: str, source: str, lines: bool = True):
    """The YAML document in `text`; ConfigError (prefixed by `source`) for anything refused.
    `lines`: say on which line a refused value is (not for a command-line value)."""
    check_characters(text, source, lines)
    loader = ConfigLoader(text)
    loader.name = source
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        check_expansion(node)
        data = loader.construct_document(node)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {e}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to be an experiment config") from None
    finally:
        loader.dispose()
    found = _find_ambiguous(data)
    if found:
        dotted, item = found
        if dotted == "(top level)":  # a command-line value: the override names the key
            raise ConfigError(f"{source}: value {item.text} is ambiguous: {item.reason}")
        where = f"line {item.line}, " if lines else ""
        raise ConfigError(f"{source}: {cut(dotted, 120)} ({where}value {item.text}) is ambiguous: {item.reason}")
    return data


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def decode(data: bytes, source: str) -> str:
    """Text of a YAML file: UTF-8, or UTF-16/32 as YAML 1.2 detects them (5.2)."""
    encoding = "utf-8"
    for bom, name in _BOMS:
        if data.startswith(bom):
            encoding = name
            break
    else:  # no byte-order mark: the spec's detection from the first (ASCII) character
        head = data[:4]
        if len(head) == 4 and head[:3] == b"\0\0\0":
            encoding = "utf-32-be"
        elif len(head) == 4 and head[1:] == b"\0\0\0":
            encoding = "utf-32-le"
        elif len(head) >= 2 and head[0] == 0:
            encoding = "utf-16-be"
        elif len(head) >= 2 and head[1] == 0:
            encoding = "utf-16-le"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ConfigError(f"{source}: not {encoding.upper().replace('-SIG', '')} text (byte 0x{data[e.start]:02x} at "
                          f"line {line}); save the file as UTF-8") from None


def read_file(path: str | Path):
    """The YAML document of a config file, refused above MAX_CONFIG_BYTES."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config '{path}' is a directory, not a YAML file "
                          "(run_exp.py -e runs every config of a folder)")
    if not path.exists():
        raise ConfigError(f"config file '{path}' does not exist")
    if not path.is_file():  # a FIFO or a device: open() would wait forever for a writer
        raise ConfigError(f"config '{path}' is not a regular file (a pipe, socket or device); "
                          "give a YAML file")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"config file '{path}' cannot be read: {e.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file '{path}' is larger than {MAX_CONFIG_BYTES // 1024} KB; "
                          "an experiment config is a few KB")
    return load_text(decode(data, str(path)), str(path))


def parse_value(raw: str, source: str):
    """A value given on the command line (`--override key=VALUE`), read like a file's."""
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{cut(source)}: longer than {MAX_CONFIG_BYTES // 1024} KB")
    return load_text(raw, source, lines=False)
