"""Reporting of training runs: terminal progress (and, later, MLflow and energy callbacks)."""

from rllib_grsn.tracking.progress import ProgressPrinter, result_summary

__all__ = ["ProgressPrinter", "result_summary"]
