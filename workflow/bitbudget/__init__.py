"""bitbudget: memory-budget studies for reasoning models."""

__version__ = "0.1.0"
