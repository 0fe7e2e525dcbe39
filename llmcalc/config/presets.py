"""Find and load presets: a built-in name or a path to a YAML file; `--set key=value` overrides.

YAML is read with yaml.safe_load only: a tag that would construct a Python object is refused.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from llmcalc.config.schema import ModelConfig
from llmcalc.errors import LLMCalcError

_SUFFIXES = (".yaml", ".yml")


def builtin_dir() -> Path:
    """The folder of built-in presets: the repo's presets/, installed as llmcalc.presets_data (a
    namespace package: no __init__.py among the YAML files). Imported straight from a checkout
    (the package found on sys.path, not through an install) that module does not exist, and the
    checkout's presets/ is the same folder."""
    spec = importlib.util.find_spec("llmcalc.presets_data")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parents[2] / "presets"


def builtin_names() -> list[str]:
    return sorted(p.stem for p in builtin_dir().iterdir() if p.suffix in _SUFFIXES)


def resolve_path(preset: str) -> Path:
    """A built-in name or a file path -> the YAML file; unknown names get the nearest ones."""
    path = Path(preset).expanduser()
    looks_like_path = path.suffix in _SUFFIXES or "/" in preset or "\\" in preset
    if looks_like_path:
        if path.is_dir():
            raise LLMCalcError(f"{preset}: is a folder, expected a preset YAML file")
        if not path.is_file():
            raise LLMCalcError(f"{preset}: file not found")
        return path
    names = builtin_names()
    if preset in names:
        return builtin_dir() / f"{preset}.yaml"
    if path.is_file():  # a file in the current folder named without a YAML suffix
        return path
    near = difflib.get_close_matches(preset, names, n=3, cutoff=0.4)
    hint = f"; nearest: {', '.join(near)}" if near else ""
    raise LLMCalcError(
        f"unknown preset {preset!r}{hint} (`llmcalc presets` lists all; a path to a YAML file works)"
    )


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping in a YAML file; every way it can be wrong is one clear LLMCalcError."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LLMCalcError(f"{path}: cannot read: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as exc:
        raise LLMCalcError(
            f"{path}: refused YAML tag {_tag_of(exc)} (line {_line_of(exc)}): presets are plain "
            "data, loaded safely; tags that construct Python objects are not allowed"
        ) from exc
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise LLMCalcError(f"{path}: YAML syntax error at line {_line_of(exc)}: {problem}") from exc
    if data is None:
        raise LLMCalcError(f"{path}: file is empty, expected a mapping of config fields")
    if not isinstance(data, dict):
        raise LLMCalcError(
            f"{path}: expected a mapping of config fields (key: value), got a {type(data).__name__}"
        )
    return data


def _line_of(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return str(mark.line + 1) if mark is not None else "?"


def _tag_of(exc: yaml.constructor.ConstructorError) -> str:
    problem = exc.problem or ""
    return problem.split("tag", 1)[-1].strip() if "tag" in problem else repr(problem)


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """['n_layers=2', 'bias=true'] -> {'n_layers': 2, 'bias': True}."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise LLMCalcError(f"--set {item!r}: expected key=value, for example --set n_layers=2")
        overrides[key] = parse_value(text.strip())
    return overrides


def parse_value(text: str) -> Any:
    """A --set value: true/false, null, an integer, a number, or else the string itself."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "~"):
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def load_config(preset: str, overrides: Mapping[str, Any] | None = None) -> ModelConfig:
    """Load a preset (name, YAML path, or a Hugging Face config.json or its folder), apply
    overrides to its raw fields, validate, resolve."""
    given = Path(preset).expanduser()
    if given.suffix == ".json" or (given.is_dir() and (given / "config.json").is_file()):
        from llmcalc.config.hf import read_hf_config  # a Hugging Face config.json

        data, origin = read_hf_config(given), str(given)
    else:
        path = resolve_path(preset)
        data = read_yaml(path)
        data.setdefault("name", path.stem)
        origin = path.stem if path.parent == builtin_dir() else str(path)
    if overrides:
        data.update(overrides)
        origin = f"{origin} (with --set)"
    return ModelConfig.from_dict(data, origin=origin)
