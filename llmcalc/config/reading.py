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
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise LLMCalcError(f"{shown(path)}: {_reason(exc)}") from None
    except ValueError as exc:  # an embedded NUL character
        raise LLMCalcError(f"{shown(path)}: not a valid file name ({exc})") from None


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENAMETOOLONG:
        return "file name too long for this system (255 characters a name, 4,096 a path)"
    if exc.errno == errno.EACCES:
        return "permission denied"
    if exc.errno == errno.ELOOP:
        return "a loop of symbolic links"
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
        return data.decode("utf-8-sig")  # a byte-order mark, as editors on Windows write, is fine
    except UnicodeDecodeError as exc:
        raise LLMCalcError(
            f"{where}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start:,})"
        ) from None


# --- YAML -------------------------------------------------------------------------------------


# libyaml's parser where PyYAML has it (about 100x faster than the pure-Python one, which takes
# ~1.5 s on a 1 MiB file); the constructor, where the checks below live, is Python in both.
_BASE: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _PresetLoader(_BASE):  # type: ignore[misc, valid-type]
    """A safe loader that refuses duplicate keys, keys that are not plain scalars, and integers
    too long to convert (Python's 4300-digit limit)."""

    def __init__(self, stream: str, where: str) -> None:
        super().__init__(stream)
        self.where = where

    def fail(self, node: yaml.Node | None, problem: str) -> LLMCalcError:
        line = f"line {node.start_mark.line + 1}: " if node is not None else ""
        return LLMCalcError(f"{self.where}: {line}{problem}")

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
                raise self.fail(key_node, f"a key must be a plain name, found a {kind}")
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in lines:
                raise self.fail(
                    key_node,
                    f"duplicate key {quote(key)} (first at line {lines[key]}): give it once",
                )
            lines[key] = line
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            raise self.fail(node, f"integer {quote(node.value)} is too long to read") from None


_PresetLoader.add_constructor("tag:yaml.org,2002:int", _PresetLoader.construct_yaml_int)


def _too_many(where: str) -> LLMCalcError:
    return LLMCalcError(
        f"{where}: more than {MAX_NODES:,} values (once aliases are expanded); a preset is a flat "
        "mapping of fields, and anchors and aliases that multiply it are refused"
    )


def _check_events(text: str, where: str) -> None:
    """Nesting depth and node count from the parser's events, before anything is composed: the
    parser streams, so a file nested 100,000 deep or a list of 500,000 items stops here early."""
    depth = nodes = 0
    for event in yaml.parse(text, Loader=_BASE):
        if isinstance(event, yaml.NodeEvent):  # scalars, aliases, starts of lists and mappings
            nodes += 1
            if nodes > MAX_NODES:
                raise _too_many(where)
        if isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise LLMCalcError(
                    f"{where}: line {event.start_mark.line + 1}: nested more than {MAX_DEPTH} "
                    "levels deep; a preset is a flat mapping of fields"
                )
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            depth -= 1


def _check_expansion(root: yaml.Node, loader: _PresetLoader) -> None:
    """Nodes in the document once every alias is expanded, without expanding any (each node's
    expanded size is computed once, iteratively: aliases can chain deeper than Python recurses);
    past MAX_NODES, or an alias inside its own anchor, is an error."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        children = _children(node)
        if children_done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[key] > MAX_NODES:
                raise _too_many(loader.where)
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise loader.fail(node, "an alias refers to the node that contains it (a cycle)")
        on_path.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                raise loader.fail(child, "an alias refers to the node that contains it (a cycle)")
            if id(child) not in sizes:
                stack.append((child, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def load_yaml(text: str, where: str) -> Any:
    """The data in a YAML text, loaded safely with the limits above."""
    try:
        _check_events(text, where)
        loader = _PresetLoader(text, where)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_expansion(node, loader)
            return loader.construct_document(node)
        finally:
            loader.dispose()
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
