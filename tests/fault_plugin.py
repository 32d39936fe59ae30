"""A plugin module for subprocess and torchrun runs (``mlkd --plugin fault_plugin ...``): its
import registers the test-only loss terms of fault_helpers (``fault_nonfinite``,
``fault_signal``), so those runs go through the real command line."""

from fault_helpers import register_nonfinite_term

register_nonfinite_term()
