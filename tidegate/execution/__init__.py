"""Execution: order sizing, pre-trade gates, ladders, the paper exchange simulator and the ccxt venue."""
