"""`python -m bench`: every benchmark, writing its table to bench/results/."""

from __future__ import annotations

import importlib

for name in (
    "bench.compiler",
    "bench.runtime",
    "bench.matrix",
    "bench.memory",
    "bench.rpc",
    "bench.placement",
    "bench.uiapi",
    "bench.ui",
    "bench.fit",
    "bench.replay",
    "bench.pull",
    "bench.gguf_corpus",
):
    print(f"== {name}", flush=True)
    module = importlib.import_module(name)
    status = module.main(["--write"])
    if status:
        raise SystemExit(status)
