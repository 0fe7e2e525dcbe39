"""Find and load presets: a built-in name or a path to a YAML file; `--set key=value` overrides.

YAML is read safely and with limits (config/reading.py): a tag that would construct a Python
object, a duplicate key, deep nesting and alias bombs are refused.
"""

from __future__ import annotations

import difflib
import importlib.util
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from llmcalc.config.reading import load_yaml, read_text, shown, stat_or_none
from llmcalc.config.schema import ModelConfig
from llmcalc.errors import LLMCalcError, quote

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
        return path  # read_yaml says what is wrong with it, if anything
    names = builtin_names()
    if preset in names:
        return builtin_dir() / f"{preset}.yaml"
    if len(preset) <= 255 and stat_or_none(path) is not None:  # a file here, no YAML suffix
        return path
    near = difflib.get_close_matches(preset, names, n=3, cutoff=0.4) if len(preset) < 100 else []
    hint = f"; nearest: {', '.join(near)}" if near else ""
    raise LLMCalcError(
        f"unknown preset {quote(preset)}{hint} (`llmcalc presets` lists all; a path to a YAML "
        "file works)"
    )


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping in a YAML file; every way it can be wrong is one clear LLMCalcError."""
    where = shown(path)
    data = load_yaml(read_text(path), where)
    if data is None:
        raise LLMCalcError(f"{where}: file is empty, expected a mapping of config fields")
    if not isinstance(data, dict):
        raise LLMCalcError(
            f"{where}: expected a mapping of config fields (key: value), got a {type(data).__name__}"
        )
    return data


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """['n_layers=2', 'bias=true'] -> {'n_layers': 2, 'bias': True}."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise LLMCalcError(
                f"--set {quote(item)}: expected key=value, for example --set n_layers=2"
            )
        if key in overrides:  # as a duplicated YAML key is refused
            raise LLMCalcError(f"--set {quote(key)}: given twice; give each field once")
        overrides[key] = parse_value(text.strip())
    return overrides


def parse_value(text: str) -> Any:
    """A --set value: true/false, null, an integer, a number, a list of these in brackets
    ([0,2], for moe_layers and global_layers), or else the string itself."""
    if text.startswith("[") and text.endswith("]"):
        return [parse_value(item.strip()) for item in text[1:-1].split(",") if item.strip()]
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "~"):
        return None
    try:
        return int(text)
    except ValueError:
        if text.lstrip("+-").replace("_", "").isdigit():  # past the 4300-digit conversion limit
            raise LLMCalcError(f"--set value {quote(text)}: too many digits to read") from None
    try:
        return float(text)
    except ValueError:
        return text


def load_config(
    preset: str,
    overrides: Mapping[str, Any] | None = None,
    varied: Mapping[str, Any] | None = None,
) -> ModelConfig:
    """Load a preset (name, YAML path, or a Hugging Face config.json or its folder), apply
    overrides (--set) and a sweep point's fields (--vary) to its raw fields, validate, resolve.
    Messages name where the config came from: 'gpt2 (with --set)', 'gpt2 with --vary d_model=512'."""
    return config_from(*read_preset(preset), overrides, varied)


def read_preset(preset: str) -> tuple[dict[str, Any], str]:
    """The raw fields of a preset (name, YAML path, config.json or its folder) and its name for
    messages, read once (a sweep builds every point from them)."""
    given = Path(preset).expanduser()
    if is_hf_config(given):
        from llmcalc.config.hf import read_hf_config  # a Hugging Face config.json

        return read_hf_config(given), shown(given)
    path = resolve_path(preset)
    data = read_yaml(path)
    data.setdefault("name", path.stem)
    return data, path.stem if path.parent == builtin_dir() else shown(path)


def config_from(
    raw: Mapping[str, Any],
    origin: str,
    overrides: Mapping[str, Any] | None = None,
    varied: Mapping[str, Any] | None = None,
) -> ModelConfig:
    """A preset's raw fields with --set overrides and --vary fields -> the validated config."""
    data = dict(raw)
    if overrides:
        data.update(overrides)
        origin = f"{origin} (with --set)"
    if varied:
        data.update(varied)
        point = ", ".join(f"{key}={quote(value)}" for key, value in varied.items())
        origin = f"{origin} with --vary {point}"
    return ModelConfig.from_dict(data, origin=origin)


def is_hf_config(given: Path) -> bool:
    """A .json file, or a folder holding a config.json."""
    if given.suffix == ".json":
        return True
    if len(given.name) > 255:  # no such folder; resolve_path says what it is instead
        return False
    status = stat_or_none(given)
    return status is not None and stat.S_ISDIR(status.st_mode) and (given / "config.json").exists()
