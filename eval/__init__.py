"""Evaluation code for sisu: benchmarks that score generated responses."""
