"""Figures 1-4 of the paper from local run logs (logs/*/metrics.jsonl), offline.

runs.py reads run directories, aggregate.py reproduces the reference notebook's
aggregation (the original code), plots.py draws, __main__.py is the CLI.
"""
