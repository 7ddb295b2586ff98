"""collapse-bench: a benchmark of posterior-collapse remedies for LSTM text VAEs."""
__version__ = "0.1.0"
