"""``tidegate demo``: the whole product on one machine, in a few minutes, with no cluster.

stack.py starts the real parts (nats-server, Prometheus, the five services) on
loopback; models.py trains and registers a baseline and a candidate; scenario.py
holds the compressed release and the fault injections; progress.py draws the live
terminal view; run.py ties them together and always stops what it started.
"""
