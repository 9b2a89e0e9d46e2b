#!/usr/bin/env python3
"""Regenerates every PyTorch reference fixture under tests/reference/.

    /usr/bin/python3 tests/reference/make_reference.py

Runs each ref_*.py module's make(out_dir) in this folder. Fixtures are committed, so the tests
never need torch. Runs single-threaded in double where a module asks for it, seeded."""
import importlib
import pathlib
import sys

import torch

here = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(here))
torch.set_num_threads(1)

for module_path in sorted(here.glob("ref_*.py")):
    module = importlib.import_module(module_path.stem)
    torch.manual_seed(0)
    written = module.make(here)
    for name in written or []:
        print(f"{module_path.stem}: wrote {name}")
