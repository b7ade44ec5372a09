"""Foundations every layer may use: errors, atomic writes, config and manifest schemas, metrics."""
