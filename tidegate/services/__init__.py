"""The trading services, one module each, runnable as ``python -m tidegate.services.<name>``.

collector → signal_engine → ai_scorer → executor → risk, talking over NATS
(tidegate.bus); runtime.py holds what they share (config, endpoints, shutdown).
"""
