"""Paper exchange simulator: queue-aware matching with swappable queue and latency models.

``PaperExchange`` (exchange.py) does not know which models it runs; ``QueueModel``
(queue.py) and ``LatencyModel`` (latency.py) are Protocols with three
implementations each, picked by name from ``executor.simulator`` in config.
"""

from tidegate.execution.simulator.exchange import ExecReport, OrderRequest, PaperExchange
from tidegate.execution.simulator.latency import (
    ConstantLatency,
    EmpiricalLatency,
    LatencyModel,
    LognormalLatency,
    make_latency_model,
)
from tidegate.execution.simulator.queue import (
    OptimisticQueue,
    ProbQueue,
    QueueModel,
    QueuePos,
    RiskAverseQueue,
    make_queue_model,
)

__all__ = [
    "ConstantLatency", "EmpiricalLatency", "ExecReport", "LatencyModel", "LognormalLatency", "OptimisticQueue",
    "OrderRequest", "PaperExchange", "ProbQueue", "QueueModel", "QueuePos", "RiskAverseQueue",
    "make_latency_model", "make_queue_model",
]
