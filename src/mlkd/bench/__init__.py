"""Benchmarks, run as ``python -m mlkd.bench <name> [options]`` (see ``BENCHES``).

Each benchmark is a module ``mlkd.bench.<name>`` with a ``main(argv) -> int`` that prints a
markdown table (and writes JSON with ``--json PATH``). Speed is reported as ratios measured in
one run, never asserted by tests.
"""

# name -> module; add a line here to register a new benchmark.
BENCHES = {
    "losses": "mlkd.bench.losses",
    "step": "mlkd.bench.step",
    "eval": "mlkd.bench.eval",
    "data": "mlkd.bench.data",
    "memory": "mlkd.bench.memory",
    "hostsync": "mlkd.bench.hostsync",
    "finetune": "mlkd.bench.finetune",
    "precision": "mlkd.bench.precision",
    "export": "mlkd.bench.export",
    "cache": "mlkd.bench.cache",
}
