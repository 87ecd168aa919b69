"""Forgetting metrics for every run, certified or not: accuracy per split, membership
inference (an SVC per feature, a class-conditional threshold attack), and ToW / ToW-MIA
against the retrain run of the same forget set. One file per metric family; pipeline.py
runs them after a run and logs them; selection.py picks runs as the field does.
memorization.py estimates memorization scores by training models on subsets, for the
forget sets of `dataset.forget.strategy: memorization` (reached through src/registry.py).
"""
