"""The baseline's method name, in a module of its own so that the report can read it without importing torch."""

VANILLA = "vanilla"      # the baseline every sweep and the report compare with
