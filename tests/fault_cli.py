"""``python tests/fault_cli.py ARGS`` = ``mlkd ARGS`` with the test-only loss terms
``fault_nonfinite`` and ``fault_signal`` registered (see fault_helpers.py); torchrun runs it as
a script for the DDP fault tests."""

import sys

from fault_helpers import register_nonfinite_term
from mlkd.cli import main

if __name__ == "__main__":
    register_nonfinite_term()
    sys.exit(main(sys.argv[1:]))
