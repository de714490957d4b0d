"""Metrics, protocols, results files and plots."""
