"""Risk and supervision maths (pure functions in metrics.py, drift.py) and the rolling per-route book-keeping."""
