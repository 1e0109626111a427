"""Offline evaluation: splitters, full-ranking metrics, baselines, reports."""
