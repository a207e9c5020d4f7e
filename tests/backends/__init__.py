"""Backends on real models and frames: each framework against the TF1 reference, conversions, the fast path,
precision variants, model families and formats."""
