"""Writes the transformers v5 forms of the config.json files the tests read (run from the
repository root with transformers 5 installed; the tests themselves need no transformers):

  tests/data/hf/v5/<model_type>.json   each tests/config/test_hf.py CONFIGS entry (a v4 file as
                                       published) re-saved: AutoConfig.for_model(type, **fields)
                                       .save_pretrained (to_dict() less the keys of every config:
                                       architectures, id2label, return_dict...)
  tests/data/hf/pythia-160m-v5/        tests/data/hf/pythia-160m re-saved the same way

v5 moves rope_theta, rope_type and partial_rotary_factor into rope_parameters and writes dtype
beside (or for) torch_dtype.
"""

import json
import sys
import tempfile
from pathlib import Path

from transformers import AutoConfig

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT))
from tests.config.test_hf import CONFIGS  # noqa: E402

HERE = Path(__file__).resolve().parent


def saved(config) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        config.save_pretrained(folder)
        return json.loads((Path(folder) / "config.json").read_text())


def main() -> None:
    for model_type, fields, _ in CONFIGS:
        config = AutoConfig.for_model(model_type, **fields)
        (HERE / f"{model_type}.json").write_text(json.dumps(saved(config), indent=2) + "\n")
    pythia = json.loads((HERE.parent / "pythia-160m" / "config.json").read_text())
    model_type = pythia.pop("model_type")
    out = HERE.parent / "pythia-160m-v5"
    out.mkdir(exist_ok=True)
    config = AutoConfig.for_model(model_type, **pythia)
    (out / "config.json").write_text(json.dumps(saved(config), indent=2) + "\n")


if __name__ == "__main__":
    main()
