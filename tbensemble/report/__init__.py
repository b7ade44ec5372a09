"""Evaluation reports: AUC with confidence intervals, operating points, calibration, plots."""
