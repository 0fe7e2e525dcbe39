"""Reading a preset YAML or a config.json, the boundary where every file is checked before it is
parsed: a regular file (not a folder, a FIFO that would block, or a device such as /dev/null), at
most 1 MiB, UTF-8; YAML through a safe loader that refuses tags, duplicate keys, keys that are
not plain names, nesting past 32 levels and alias expansion past 10,000 nodes; JSON whose
nesting depth is checked before json.loads sees it (so it never recurses too deep), with
duplicate keys and NaN/Infinity refused. Every way a file can be wrong is one LLMCalcError."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml

from llmcalc.errors import LLMCalcError, quote

MAX_FILE_BYTES = 1 << 20  # presets are ~1 KiB, config.json files a few KiB
MAX_DEPTH = 32  # nesting of lists and mappings; a preset is flat, a config.json nests 2-3 deep
MAX_NODES = 10_000  # YAML nodes after alias expansion (a preset has about 40)
_NAME_SHOWN = 80  # characters of a path shown in a message


def shown(text: str | Path) -> str:
    """A path or name as messages print it: whole up to 80 characters, else its start."""
    text = str(text)
    if len(text) <= _NAME_SHOWN:
        return text
    return f"{text[:_NAME_SHOWN]}… ({len(text):,} characters)"


def stat_or_none(path: Path) -> os.stat_result | None:
    """The file's status, None if nothing is there; a name the system cannot look up (too long,
    no permission on a folder) is an error that says so."""
    try:
        return path.stat()
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return None
        raise LLMCalcError(f"{shown(path)}: {_reason(exc)}") from None
    except ValueError as exc:  # an embedded NUL character
        raise LLMCalcError(f"{shown(path)}: not a valid file name ({exc})") from None


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENAMETOOLONG:
        return f"file name too long ({len(str(exc.filename or '')):,} characters)"
    if exc.errno == errno.EACCES:
        return "permission denied"
    return f"cannot read it ({exc.strerror or exc})"


_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def read_text(path: Path) -> str:
    """The text of a config file: a regular UTF-8 file of at most MAX_FILE_BYTES."""
    where = shown(path)
    status = stat_or_none(path)
    if status is None:
        raise LLMCalcError(f"{where}: file not found")
    if stat.S_ISDIR(status.st_mode):
        raise LLMCalcError(f"{where}: is a folder, expected a file")
    if not stat.S_ISREG(status.st_mode):
        kind = next((name for test, name in _KINDS if test(status.st_mode)), "not a regular file")
        raise LLMCalcError(f"{where}: is {kind}, not a regular file; expected a config file")
    if status.st_size > MAX_FILE_BYTES:
        raise LLMCalcError(
            f"{where}: {status.st_size:,} bytes; config files are read up to 1 MiB "
            f"({MAX_FILE_BYTES:,} bytes)"
        )
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise LLMCalcError(f"{where}: {_reason(exc)}") from None
    if len(data) > MAX_FILE_BYTES:  # it grew after the stat
        raise LLMCalcError(f"{where}: more than 1 MiB; config files are read up to 1 MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LLMCalcError(
            f"{where}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start:,})"
        ) from None


# --- YAML -------------------------------------------------------------------------------------


class _PresetLoader(yaml.SafeLoader):
    """yaml.SafeLoader with limits: nesting depth while composing, the size of the document once
    aliases are expanded, duplicate and non-scalar keys, integers too long to convert."""

    def __init__(self, stream: str, where: str) -> None:
        super().__init__(stream)
        self.where, self.depth = where, 0

    def _fail(self, node: yaml.Node | None, problem: str) -> LLMCalcError:
        line = f"line {node.start_mark.line + 1}: " if node is not None else ""
        return LLMCalcError(f"{self.where}: {line}{problem}")

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            return super().compose_node(parent, index)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            event = self.peek_event()
            raise LLMCalcError(
                f"{self.where}: line {event.start_mark.line + 1}: nested more than {MAX_DEPTH} "
                "levels deep; a preset is a flat mapping of fields"
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        _expanded_size(node, {}, set(), self)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
                raise self._fail(key_node, f"a key must be a plain name, found a {kind}")
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in lines:
                raise self._fail(
                    key_node,
                    f"duplicate key {quote(key)} (first at line {lines[key]}): give it once",
                )
            lines[key] = line
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            raise self._fail(node, f"integer {quote(node.value)} is too long to read") from None


_PresetLoader.add_constructor("tag:yaml.org,2002:int", _PresetLoader.construct_yaml_int)


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_: set[int], loader: Any) -> int:
    """Nodes in the document once every alias is expanded (memoised: linear in its real size);
    past MAX_NODES, or an alias inside its own anchor, is an error."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise loader._fail(node, "an alias refers to the node that contains it (a cycle)")
    open_.add(key)
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, sizes, open_, loader) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            size += _expanded_size(k, sizes, open_, loader) + _expanded_size(
                v, sizes, open_, loader
            )
    open_.discard(key)
    if size > MAX_NODES:
        raise loader._fail(
            None,
            f"more than {MAX_NODES:,} values once its aliases are expanded; a preset is a flat "
            "mapping of fields (anchors and aliases that multiply it are refused)",
        )
    sizes[key] = size
    return size


def load_yaml(text: str, where: str) -> Any:
    """The data in a YAML text, loaded safely with the limits above."""
    loader = _PresetLoader(text, where)
    try:
        return loader.get_single_data()
    except yaml.constructor.ConstructorError as exc:
        raise LLMCalcError(
            f"{where}: refused YAML tag {_tag_of(exc)} (line {_line_of(exc)}): presets are plain "
            "data, loaded safely; tags that construct Python objects are not allowed"
        ) from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise LLMCalcError(
            f"{where}: YAML syntax error at line {_line_of(exc)}: {shown(problem)}"
        ) from None
    finally:
        loader.dispose()


def _line_of(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return str(mark.line + 1) if mark is not None else "?"


def _tag_of(exc: yaml.constructor.ConstructorError) -> str:
    problem = exc.problem or ""
    return shown(problem.split("tag", 1)[-1].strip()) if "tag" in problem else quote(problem)


# --- JSON -------------------------------------------------------------------------------------

# A string (to its closing quote, or to the end when it has none: linear either way) or a bracket
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)|[\[\]{}]', re.DOTALL)


def json_depth_ok(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether no list or object in `text` nests deeper than `limit` (strings skipped)."""
    depth = 0
    for match in _JSON_TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > limit:
                return False
        elif token in "]}":
            depth -= 1
    return True


def load_json(text: str, where: str) -> Any:
    """The data in a JSON text: nesting checked first; duplicate keys, NaN and Infinity refused."""
    if not json_depth_ok(text):
        raise LLMCalcError(f"{where}: nested more than {MAX_DEPTH} levels deep")

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for key, value in items:
            if key in data:
                raise LLMCalcError(f"{where}: duplicate key {quote(key)}: give it once")
            data[key] = value
        return data

    def constant(name: str) -> float:
        raise LLMCalcError(f"{where}: {name} is not a JSON number; give a finite number")

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError as exc:
        raise LLMCalcError(f"{where}: malformed JSON at line {exc.lineno}: {exc.msg}") from None
    except ValueError as exc:  # an integer past Python's 4300-digit conversion limit
        raise LLMCalcError(f"{where}: {shown(str(exc))}") from None
