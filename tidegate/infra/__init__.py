"""Real servers on loopback: nats-server, Prometheus, kube-apiserver + etcd.

Used by the test suite's fixtures and by the local demo, so both start the same
processes the same way. Every listener binds 127.0.0.1 on a free port; every
process is stopped (terminate, then kill) by whoever started it.
"""
