"""A real single-node Kubernetes on loopback: etcd, kube-apiserver, containerd, kubelet,
kube-scheduler and kube-controller-manager, all inside a network namespace with only ``lo``.

This is the cluster tier's node (``docs/cluster-tests.md``): the chart's pods really run
(containerd + runc), are placed by the real scheduler, owned by real ReplicaSets and
probed by the real kubelet. No network plugin and no kube-proxy: every pod uses
``hostNetwork`` and addresses what it needs by 127.0.0.1 ports. The settings that matter
here (each one was needed on our machines, see the probe notes):

- containerd ``restrict_oom_score_adj``: root here cannot lower ``oom_score_adj``, and
  without it every sandbox fails in runc;
- kubelet ``--hostname-override=127.0.0.1``: ``--node-ip`` refuses loopback, but an
  IP-literal hostname becomes the node's InternalIP, so node, pod and host IP are 127.0.0.1;
- a CNI config naming a plugin that does not exist: containerd reports the network ready
  once a config loads, and the plugin is never called for ``hostNetwork`` sandboxes;
- ``imageGCHighThresholdPercent: 100``: the locally imported images can never be pulled
  again, so they must never be collected.

Teardown is the hard part: kubelet leaves containers running when it exits, and shims
outlive containerd. ``stop`` kills every task first, then stops kubelet and containerd,
unmounts what kubelet and the snapshotter mounted under the work directory, removes the
cgroups kubelet created, and returns what it could not remove (``Leftovers``), which the
fixture turns into a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tidegate.infra import binaries
from tidegate.infra.kube_control_plane import KubeControlPlane, issue_certificate
from tidegate.infra.netns import NetNamespace
from tidegate.infra.process import ServerProcess

NODE_NAME = "127.0.0.1"
APISERVER_PORT = 6443        # fixed: the namespace is private, and pods are told this port
KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248
CGROUP_ROOT = Path("/sys/fs/cgroup")
KUBE_CGROUPS = ("kubepods",)
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Leftovers:
    """What a stopped node left behind; empty when teardown was complete."""

    processes: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    netns: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.processes or self.mounts or self.cgroups or self.netns)

    def __str__(self) -> str:
        parts = [f"{k}: {v}" for k, v in (("processes", self.processes), ("mounts", self.mounts),
                                           ("cgroups", self.cgroups), ("netns", self.netns)) if v]
        return "; ".join(parts) or "nothing"


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root`` (deepest first, the order to unmount them in)."""
    prefix = str(root.resolve())
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(set(points), key=lambda p: (-p.count("/"), p))


def processes_mentioning(needle: str) -> list[tuple[int, str]]:
    """Live processes whose command line contains ``needle`` (a work directory)."""
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        with contextlib.suppress(OSError):
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            if needle in cmd:
                found.append((int(entry.name), cmd))
    return found


def kube_cgroups() -> list[Path]:
    """kubelet's QoS cgroup trees (cgroupfs driver), in every mounted hierarchy."""
    out = []
    if CGROUP_ROOT.is_dir():
        for hierarchy in CGROUP_ROOT.iterdir():
            for name in KUBE_CGROUPS:
                if (hierarchy / name).is_dir():
                    out.append(hierarchy / name)
    return out


def remove_cgroup_tree(top: Path) -> None:
    """rmdir a cgroup and its children, deepest first (a cgroup can only go once empty)."""
    dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
    for d in [*dirs, top]:
        with contextlib.suppress(OSError):
            d.rmdir()


class KubeNode:
    """``start`` brings the node to Ready; ``stop`` removes everything it made."""

    def __init__(self, workdir: Path, *, images: list[Path] | None = None, pause_image: str = "",
                 netns: NetNamespace | None = None):
        self.workdir = workdir.resolve()
        self.images = list(images or [])
        self.pause_image = pause_image
        self.ns = netns or NetNamespace()
        self._own_ns = netns is None
        self.bins = {name: binaries.require(name) for name in (
            "kubelet", "kube-scheduler", "kube-controller-manager", "kubectl")}
        self.plane: KubeControlPlane | None = None
        self.procs: dict[str, ServerProcess] = {}
        self.timings: dict[str, float] = {}
        self.ctr_socket = self.workdir / "containerd" / "containerd.sock"

    # ---- paths and commands
    @property
    def kubeconfig(self) -> Path:
        assert self.plane is not None
        return self.plane.kubeconfig

    @property
    def pki(self) -> Path:
        return self.workdir / "plane" / "pki"

    def env(self) -> dict[str, str]:
        """Environment for kubectl/helm against the node (to be run inside the namespace)."""
        return {"KUBECONFIG": str(self.kubeconfig), "PATH": SYSTEM_PATH, "HOME": str(self.workdir / "home"),
                "KUBECACHEDIR": str(self.workdir / "kubectl-cache")}

    def run(self, cmd: list[str | os.PathLike[str]], *, check: bool = True, timeout: float = 120,
            env: dict[str, str] | None = None, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """A command inside the namespace (kubectl, helm, ctr, ...)."""
        proc = subprocess.run(self.ns.argv(cmd), capture_output=True, text=True, timeout=timeout,
                              env={**self.env(), **(env or {})}, input=input)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
        return proc

    def kubectl(self, *args: str, check: bool = True, timeout: float = 120,
                input: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.run([self.bins["kubectl"], *args], check=check, timeout=timeout, input=input)

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.run([binaries.require("ctr"), "--address", str(self.ctr_socket), "-n", "k8s.io", *args],
                        check=check, timeout=timeout)

    # ---- start
    def start(self, timeout: float = 120.0) -> KubeNode:
        t0 = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "home").mkdir(exist_ok=True)
        if self._own_ns:
            self.ns.create()
        try:
            self.ns.run(self._start_plane, timeout)
            self.timings["apiserver_ready_s"] = time.monotonic() - t0
            self.ns.run(self._start_containerd)
            self.timings["containerd_ready_s"] = time.monotonic() - t0
            self._import_images()
            self.timings["images_imported_s"] = time.monotonic() - t0
            self.ns.run(self._start_node_components)
            self._wait_node_ready(timeout)
            self.timings["node_ready_s"] = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise
        return self

    def _start_plane(self, timeout: float) -> None:
        users = {f"system:node:{NODE_NAME}": ("system:nodes",),
                 "system:kube-scheduler": ("system:masters",),
                 "system:kube-controller-manager": ("system:masters",)}
        self.plane = KubeControlPlane(self.workdir / "plane", node=True, port=APISERVER_PORT,
                                      extra_users=users).start(timeout)

    def _start_containerd(self) -> None:
        d = self.workdir / "containerd"
        cni_conf = self.workdir / "cni" / "conf"
        cni_conf.mkdir(parents=True, exist_ok=True)
        (self.workdir / "cni" / "bin").mkdir(parents=True, exist_ok=True)
        # containerd only checks that a config loads; hostNetwork sandboxes never call the plugin
        (cni_conf / "10-loopback-only.conflist").write_text(json.dumps({
            "cniVersion": "0.4.0", "name": "loopback-only",
            "plugins": [{"type": "tidegate-no-pod-network"}]}))
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config = f'''version = 2
root = "{d / 'root'}"
state = "{d / 'state'}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{self.ctr_socket}"
[ttrpc]
  address = "{d / 'containerd.ttrpc.sock'}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d / 'opt'}"
[{cri}]
  sandbox_image = "{self.pause_image}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
  discard_unpacked_layers = false
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
[{cri}.cni]
  bin_dir = "{self.workdir / 'cni' / 'bin'}"
  conf_dir = "{cni_conf}"
'''
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.toml").write_text(config)
        proc = ServerProcess("containerd", [binaries.require("containerd"), "--config", d / "config.toml"],
                             self.workdir / "logs" / "containerd.log", env={"PATH": SYSTEM_PATH}).start()
        self.procs["containerd"] = proc
        ctr = binaries.require("ctr")

        def ready() -> bool:
            return subprocess.run([ctr, "--address", str(self.ctr_socket), "version"], capture_output=True,
                                  timeout=5).returncode == 0
        proc.wait_ready(ready, 30, "serving on its socket")

    def _import_images(self) -> None:
        for tar in self.images:
            self.ctr("images", "import", "--no-unpack=false", str(tar), timeout=300)

    def _start_node_components(self) -> None:
        assert self.plane is not None
        kubelet_dir = self.workdir / "kubelet"
        kubelet_dir.mkdir(parents=True, exist_ok=True)
        crt, key = issue_certificate(self.pki, "kubelet", f"system:node:{NODE_NAME}", server=True)
        cfg = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "address": "127.0.0.1", "port": KUBELET_PORT, "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": KUBELET_HEALTHZ_PORT,
            "tlsCertFile": str(crt), "tlsPrivateKeyFile": str(key),
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(self.pki / "ca.crt")}},
            "authorization": {"mode": "Webhook"},
            "cgroupDriver": "cgroupfs", "failCgroupV1": False, "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.ctr_socket}",
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                             "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
            "podLogsDir": str(self.workdir / "pod-logs"),
            "resolvConf": "", "clusterDomain": "cluster.local",
            "serializeImagePulls": False, "registerNode": True,
            "syncFrequency": "5s", "nodeStatusUpdateFrequency": "5s",
            "fileCheckFrequency": "5s", "httpCheckFrequency": "5s",
            "shutdownGracePeriod": "0s",
        }
        (kubelet_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
        kc = {name: self.plane.write_kubeconfig(self.workdir / f"{name}.kubeconfig", user=user)
              for name, user in (("kubelet", f"system:node:{NODE_NAME}"),
                                 ("scheduler", "system:kube-scheduler"),
                                 ("controller-manager", "system:kube-controller-manager"))}
        logs = self.workdir / "logs"
        self.procs["kubelet"] = ServerProcess("kubelet", [
            self.bins["kubelet"], f"--config={kubelet_dir / 'config.yaml'}", f"--kubeconfig={kc['kubelet']}",
            f"--root-dir={kubelet_dir}", f"--cert-dir={kubelet_dir / 'pki'}",
            f"--hostname-override={NODE_NAME}", "--v=1",
        ], logs / "kubelet.log", env={"PATH": SYSTEM_PATH}).start()
        self.procs["kube-scheduler"] = ServerProcess("kube-scheduler", [
            self.bins["kube-scheduler"], f"--kubeconfig={kc['scheduler']}",
            f"--authentication-kubeconfig={kc['scheduler']}", f"--authorization-kubeconfig={kc['scheduler']}",
            "--bind-address=127.0.0.1", "--leader-elect=false", "--v=1",
        ], logs / "kube-scheduler.log").start()
        self.procs["kube-controller-manager"] = ServerProcess("kube-controller-manager", [
            self.bins["kube-controller-manager"], f"--kubeconfig={kc['controller-manager']}",
            f"--authentication-kubeconfig={kc['controller-manager']}",
            f"--authorization-kubeconfig={kc['controller-manager']}",
            "--bind-address=127.0.0.1", "--leader-elect=false",
            f"--service-account-private-key-file={self.pki / 'sa.key'}",
            f"--root-ca-file={self.pki / 'ca.crt'}", "--use-service-account-credentials=false",
            "--controllers=*,-nodeipam,-service,-route,-cloud-node-lifecycle,-persistentvolume-binder",
            "--concurrent-deployment-syncs=5", "--v=1",
        ], logs / "kube-controller-manager.log").start()

    def _wait_node_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if not proc.alive():
                    raise RuntimeError(f"{name} exited before the node was Ready; log {proc.log_path}:\n"
                                       f"{proc.log_tail()}")
            out = self.kubectl("get", "node", NODE_NAME, "-o",
                               "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False)
            last = out.stdout.strip() or out.stderr.strip()
            if last == "True":
                return
            time.sleep(0.25)
        raise TimeoutError(f"node {NODE_NAME} not Ready after {timeout:.0f}s (last: {last}); "
                           f"kubelet log {self.procs['kubelet'].log_path}:\n{self.procs['kubelet'].log_tail()}")

    # ---- stop
    def _kill_tasks(self) -> None:
        if "containerd" not in self.procs or not self.procs["containerd"].alive():
            return
        out = self.ctr("tasks", "list", "-q", check=False, timeout=30)
        tasks = [t for t in out.stdout.split() if t]
        for task in tasks:
            self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False, timeout=30)
        for task in tasks:
            self.ctr("tasks", "delete", "-f", task, check=False, timeout=30)

    def stop(self) -> Leftovers:
        """Stop everything, in the order that leaves nothing behind; report what remains."""
        order = ("kube-controller-manager", "kube-scheduler", "kubelet")
        for name in order:          # controllers first: nothing recreates pods while they go
            if name in self.procs:
                self.procs[name].stop()
        with contextlib.suppress(Exception):
            self._kill_tasks()
        if "containerd" in self.procs:
            self.procs["containerd"].stop()
        # shims outlive containerd (they are re-parented, in their own groups)
        for pid, _cmd in processes_mentioning(str(self.workdir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.plane is not None:
            self.ns.run(self.plane.stop) if self.ns._pool is not None else self.plane.stop()
        deadline = time.monotonic() + 10
        while processes_mentioning(str(self.workdir)) and time.monotonic() < deadline:
            time.sleep(0.1)
        for point in mounts_under(self.workdir):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        for top in kube_cgroups():
            remove_cgroup_tree(top)
        if self._own_ns:
            self.ns.delete()
        return self.leftovers()

    def leftovers(self) -> Leftovers:
        return Leftovers(
            processes=[f"{pid} {cmd[:120]}" for pid, cmd in processes_mentioning(str(self.workdir))],
            mounts=mounts_under(self.workdir),
            cgroups=[str(c) for c in kube_cgroups()],
            netns=[self.ns.name] if self._own_ns and self.ns.path.exists() else [])
