"""decoder2vec info [MODEL]"""

from __future__ import annotations

import json

from ..cpu import describe
from ..encoder import Encoder
from . import add_model_argument


KEYWORDS_OF = (Encoder.from_pretrained,)
CLI_ONLY = {"json": "print JSON"}


def add_arguments(p):
    add_model_argument(p, positional=True)
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args):
    # The CPU's matrix units and the engine `--fast` runs on them (cpu.py), after the model's facts.
    info = {**Encoder.from_pretrained(args.model).info(), **describe()}
    if args.json:
        print(json.dumps(info, indent=2))
        return
    width = max(map(len, info))
    for key, value in info.items():
        if key == "parameters":
            value = f"{value:,} ({value / 1e6:.1f}M)"
        print(f"{key:<{width}}  {value}")
