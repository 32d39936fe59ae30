"""mlkd: multi-label knowledge distillation (L2D: MLD + CD + ID) and its baselines."""

__version__ = "0.1.0"
