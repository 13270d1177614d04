"""A network namespace with only loopback, for servers that must not reach any network.

The single-node cluster tier runs kubelet, containerd and pods whose environment names
an in-cluster service address (kubelet injects ``KUBERNETES_SERVICE_HOST`` from the
service range whatever the pod spec says). Inside a namespace whose only interface is
``lo``, a connection to any address but 127.0.0.1 fails at once with "Network is
unreachable": no packet can leave, whatever a pod dials.

Two ways in, both without touching the mount namespace (``ip netns exec`` would remount
``/sys`` and hide the cgroup hierarchy that kubelet and runc need):

- ``argv(cmd)`` prefixes a command with ``nsenter --net=...`` for child processes;
- ``run(fn)`` calls ``fn`` on a worker thread that has joined the namespace with
  ``setns(2)``. A network namespace is a per-thread attribute on Linux, so sockets that
  thread opens (HTTP probes, NATS or Kubernetes clients) and processes it forks live in
  the namespace, while the rest of the test process stays where it was.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import os
import secrets
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")


def _setns(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if hasattr(os, "setns"):             # Python 3.12+
            os.setns(fd, CLONE_NEWNET)
        else:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


class NetNamespace:
    """``ip netns add NAME`` with ``lo`` up; ``delete`` removes it (idempotent)."""

    def __init__(self, name: str | None = None):
        self.name = name or f"tidegate-{secrets.token_hex(3)}"
        self.path = NETNS_DIR / self.name
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def create(self) -> NetNamespace:
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True, text=True)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True, capture_output=True)
        # one thread, joined once: every call shares it, so a client made in one call works in the next
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"netns-{self.name}",
                                                           initializer=_setns, initargs=(self.path,))
        return self

    def run(self, fn: Callable[..., T], *args: object, timeout: float | None = None, **kwargs: object) -> T:
        """``fn(*args, **kwargs)`` inside the namespace; its exceptions propagate."""
        if self._pool is None:
            raise RuntimeError(f"network namespace {self.name} is not created")
        return self._pool.submit(fn, *args, **kwargs).result(timeout)

    def argv(self, cmd: Sequence[str | os.PathLike[str]]) -> list[str]:
        return ["nsenter", f"--net={self.path}", "--", *[str(c) for c in cmd]]

    def interfaces(self) -> list[str]:
        """Interface names inside the namespace (the safety tests check it is only ``lo``)."""
        out = subprocess.run(["ip", "-n", self.name, "-brief", "link"], check=True, capture_output=True,
                             text=True).stdout
        return [line.split()[0].split("@")[0] for line in out.splitlines() if line.strip()]

    def delete(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self.path.exists():
            subprocess.run(["ip", "netns", "delete", self.name], check=False, capture_output=True)
