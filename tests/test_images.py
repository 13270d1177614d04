"""The cluster tier's images (tidegate.infra.images), checked without containerd.

- the Dockerfile parser on both real Dockerfiles and on the syntax they could grow into;
- the built OCI tars: layout, names equal to what the chart renders, digests that match
  the blobs, a config equal to the Dockerfile's runtime stage, the files each layer must
  hold, and one shared runtime layer;
- functionally: both layers extracted into a directory and the services' imports run in
  it as the image's user, env and working directory (chroot), which proves the copied
  shared-library closure is complete; the pause binary exits 0 on SIGTERM and reaps.

Building is slow only the first time (pip into the runtime layer; minutes), then cached.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import IN_CI, need_binary

from tidegate.infra import images

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "tidegate"


def _need(condition: bool, reason: str) -> None:
    if not condition:
        if IN_CI:
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)


# --------------------------------------------------------------------------------------
# Dockerfile parser
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["services", "operator"])
def test_parser_reads_the_runtime_stage_of_the_real_dockerfiles(name):
    stage = images.dockerfile_stage(name)
    assert stage.base == "python:3.11.11-slim-bookworm"   # ARG before FROM, expanded
    assert stage.user == "10001:10001"
    assert stage.workdir == "/app"
    assert stage.exposed_ports == ["8080/tcp", "9100/tcp"]
    assert stage.env["PATH"].startswith("/opt/venv/bin:")
    assert stage.env["PATH"] == "/opt/venv/bin:" + images.BASE_ENV["PATH"]
    assert stage.env["PYTHONPATH"] == "/app"
    assert stage.env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert stage.env["HEALTH_PORT"] == "8080" and stage.env["METRICS_PORT"] == "9100"
    # the build stage's ENV (PIP_*) is not the runtime image's
    assert "PIP_NO_CACHE_DIR" not in stage.env
    copies = {c.dest: c for c in stage.copies}
    assert copies["/opt/venv"].from_stage == "build"
    assert copies["/app/tidegate"].sources == ("tidegate",) and copies["/app/tidegate"].chown == "root:root"
    assert "/app/config" in copies
    if name == "services":
        assert stage.entrypoint is None
        assert stage.cmd == ["python", "-m", "tidegate.cli", "--help"]
        assert stage.env["EXCHANGE_MODE"] == "paper"
        assert copies["/app/scripts/"].sources == ("scripts/*.py",)
        assert copies["/app/app"].sources == ("app",)
    else:
        assert stage.entrypoint == ["kopf"]
        assert stage.cmd is not None and stage.cmd[0] == "run" and "tidegate.operator.main" in stage.cmd
        assert copies["/app/crds"].sources == ("crds",)
        assert "EXCHANGE_MODE" not in stage.env


def test_parser_handles_continuations_quotes_expansion_and_stage_rules():
    text = """
ARG BASE=debian:12
FROM ${BASE} AS build
ENV LEAK=1
FROM ${BASE}
ARG VER=2.0
# a comment
ENV A=1 \\
    # comments inside a continuation are ignored
    B="two words" \\
    C=${VER}/$A
ENV LEGACY value with spaces
ENV PATH=/x/bin:$PATH
WORKDIR /srv
WORKDIR app
EXPOSE 8080 53/udp
USER nobody
CMD echo hi
ENTRYPOINT ["/bin/tini", "--"]
CMD ["serve", "--port", "8080"]
COPY --chown=1:1 a b ./dst/
COPY --from=build /x /y
"""
    stage = images.parse_dockerfile(text, base_env={"PATH": "/usr/bin"})
    assert stage.base == "debian:12"
    assert stage.env == {"PATH": "/x/bin:/usr/bin", "A": "1", "B": "two words", "C": "2.0/",
                         "LEGACY": "value with spaces"}  # C: $A of the same line is not yet set
    assert stage.workdir == "/srv/app"
    assert stage.exposed_ports == ["8080/tcp", "53/udp"]
    assert stage.user == "nobody"
    assert stage.entrypoint == ["/bin/tini", "--"]
    assert stage.cmd == ["serve", "--port", "8080"]
    assert stage.copies[0] == images.Copy(("a", "b"), "/srv/app/dst/", "1:1", None)
    assert stage.copies[1].from_stage == "build" and stage.copies[1].dest == "/y"
    cfg = stage.oci_config()
    assert cfg["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert cfg["Env"][0] == "PATH=/x/bin:/usr/bin"
    # shell form, and ENTRYPOINT clearing a CMD set before it
    later = images.parse_dockerfile("FROM x\nCMD [\"a\"]\nENTRYPOINT run me\n")
    assert later.entrypoint == ["/bin/sh", "-c", "run me"] and later.cmd is None


def test_dockerignore_matcher_follows_the_repository_file():
    ignored = images.dockerignore_matcher((REPO / ".dockerignore").read_text())
    assert ignored("tidegate/__pycache__/x.pyc")
    assert ignored("tidegate/services/__pycache__")
    assert ignored("config/markets/bybit_v5_linear_instruments.json")
    assert not ignored("config/markets/bybit_v5_linear.json")
    assert ignored("tests/test_images.py") and ignored(".git/HEAD")
    assert not ignored("tidegate/services/executor.py")
    neg = images.dockerignore_matcher("docs\n!docs/keep.md\n")
    assert ignored("docs/x.md") is True and neg("docs/x.md") and not neg("docs/keep.md")


def test_layers_are_deterministic_whatever_the_mtimes(tmp_path):
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "mod.py").write_text("x = 1\n")
    (src / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(src / "run.sh", 0o700)
    (src / "link").symlink_to("pkg/mod.py")

    def digest() -> str:
        layer = images.Layer()
        layer.add_tree(src, "/app")
        return layer.write(io.BytesIO()).digest

    first = digest()
    os.utime(src / "pkg" / "mod.py", (1, 1))
    assert digest() == first
    buf = io.BytesIO()
    layer = images.Layer()
    layer.add_tree(src, "/app")
    layer.write(buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert list(members) == sorted(members)
    assert members["app/run.sh"].mode == 0o755 and members["app/pkg/mod.py"].mode == 0o644
    assert members["app/link"].issym() and members["app/link"].linkname == "pkg/mod.py"
    assert {m.mtime for m in members.values()} == {images.MTIME}
    assert {(m.uid, m.gid) for m in members.values()} == {(0, 0)}


# --------------------------------------------------------------------------------------
# The built tars
# --------------------------------------------------------------------------------------
class OciTar:
    """Read access to an OCI image-layout tar (one image)."""

    def __init__(self, path: Path):
        self.path = path
        self.tar = tarfile.open(path)
        self.names = self.tar.getnames()
        self.index = json.loads(self.read("index.json"))
        (entry,) = self.index["manifests"]
        self.entry = entry
        self.manifest = json.loads(self.blob(entry["digest"]))
        self.config = json.loads(self.blob(self.manifest["config"]["digest"]))

    def read(self, name: str) -> bytes:
        fh = self.tar.extractfile(name)
        assert fh is not None, name
        return fh.read()

    def blob(self, digest: str) -> bytes:
        return self.read("blobs/sha256/" + digest.split(":", 1)[1])

    def blob_sha256(self, digest: str) -> tuple[str, int]:
        fh = self.tar.extractfile("blobs/sha256/" + digest.split(":", 1)[1])
        assert fh is not None
        sha, size = hashlib.sha256(), 0
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
        return f"sha256:{sha.hexdigest()}", size

    def layer(self, digest: str) -> tarfile.TarFile:
        fh = self.tar.extractfile("blobs/sha256/" + digest.split(":", 1)[1])
        assert fh is not None
        return tarfile.open(fileobj=fh)

    def layer_digests(self) -> list[str]:
        return [d["digest"] for d in self.manifest["layers"]]


@pytest.fixture(scope="session")
def built() -> dict[str, images.ImageTar]:
    need_binary(images.PAUSE_BINARY)
    _need(images.HOST_PYTHON.is_file(), f"{images.HOST_PYTHON} missing (Debian package python3.11)")
    t0 = time.monotonic()
    result = images.build_images()
    print(f"images built in {time.monotonic() - t0:.1f} s")
    return result


@pytest.fixture(scope="session")
def oci(built) -> Iterator[dict[str, OciTar]]:
    tars = {key: OciTar(image.path) for key, image in built.items()}
    yield tars
    for t in tars.values():
        t.tar.close()


def test_the_names_are_what_the_chart_renders(built):
    helm = need_binary("helm")
    res = subprocess.run([str(helm), "template", "rel", str(CHART), "--namespace", "tidegate"],
                         capture_output=True, text=True, timeout=120, check=True)
    rendered: dict[str, set[str]] = {}
    for doc in yaml.safe_load_all(res.stdout):
        if doc and doc.get("kind") == "Deployment":
            for c in doc["spec"]["template"]["spec"]["containers"]:
                rendered.setdefault(doc["metadata"]["name"], set()).add(c["image"])
    every = set().union(*rendered.values())
    assert every == {built["services"].name, built["operator"].name}
    assert all(built["operator"].name in imgs for name, imgs in rendered.items() if "operator" in name)
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert built["services"].name == f"ghcr.io/tidegate/tidegate-services:{chart['appVersion']}"
    assert built["operator"].name == f"ghcr.io/tidegate/tidegate-operator:{chart['appVersion']}"
    assert built["pause"].name == images.PAUSE_IMAGE


def test_every_tar_is_a_valid_oci_layout_with_matching_digests(built, oci):
    for key, t in oci.items():
        assert json.loads(t.read("oci-layout")) == {"imageLayoutVersion": "1.0.0"}
        assert t.index["mediaType"] == images.MT_INDEX
        ann = t.entry["annotations"]
        assert ann["io.containerd.image.name"] == built[key].name
        assert ann["org.opencontainers.image.ref.name"] == built[key].name.rsplit(":", 1)[1]
        assert t.entry["platform"] == {"architecture": "amd64", "os": "linux"}
        assert t.entry["mediaType"] == images.MT_MANIFEST and t.entry["digest"] == built[key].manifest_digest
        manifest_bytes = t.blob(t.entry["digest"])
        assert f"sha256:{hashlib.sha256(manifest_bytes).hexdigest()}" == t.entry["digest"]
        assert len(manifest_bytes) == t.entry["size"]
        cfg = t.manifest["config"]
        assert cfg["mediaType"] == images.MT_CONFIG
        assert f"sha256:{hashlib.sha256(t.blob(cfg['digest'])).hexdigest()}" == cfg["digest"]
        for layer in t.manifest["layers"]:
            assert layer["mediaType"] == images.MT_LAYER
            assert t.blob_sha256(layer["digest"]) == (layer["digest"], layer["size"])
        # uncompressed layers: diff_ids are the layer digests
        assert t.config["rootfs"] == {"type": "layers", "diff_ids": t.layer_digests()}
        blobs = {n for n in t.names if n.startswith("blobs/sha256/")}
        assert blobs == {f"blobs/sha256/{d.split(':')[1]}"
                         for d in [t.entry["digest"], cfg["digest"], *t.layer_digests()]}


@pytest.mark.parametrize("key", ["services", "operator"])
def test_config_is_the_dockerfiles_runtime_stage(oci, key):
    stage = images.dockerfile_stage(key)
    cfg = oci[key].config["config"]
    assert oci[key].config["architecture"] == "amd64" and oci[key].config["os"] == "linux"
    assert cfg["User"] == stage.user == "10001:10001"
    assert cfg["ExposedPorts"] == {"8080/tcp": {}, "9100/tcp": {}}
    assert cfg.get("Entrypoint") == stage.entrypoint
    assert cfg.get("Cmd") == stage.cmd
    assert cfg["Env"] == [f"{k}={v}" for k, v in stage.env.items()]
    assert cfg["WorkingDir"] == "/app"


def test_pause_image(oci):
    t = oci["pause"]
    assert t.config["config"]["Entrypoint"] == ["/pause"]
    assert t.config["config"]["User"] == "65535:65535"
    (layer,) = t.layer_digests()
    with t.layer(layer) as tar:
        (member,) = tar.getmembers()
        assert member.name == "pause" and member.isfile() and member.mode == 0o755


def test_the_runtime_layer_is_shared_and_holds_what_the_pods_need(oci):
    services, operator = oci["services"], oci["operator"]
    assert services.layer_digests()[0] == operator.layer_digests()[0]
    assert services.layer_digests()[1] != operator.layer_digests()[1]
    with services.layer(services.layer_digests()[0]) as tar:
        members = {m.name: m for m in tar.getmembers()}
        passwd = tar.extractfile("etc/passwd").read().decode()  # type: ignore[union-attr]
        kopf = tar.extractfile("opt/venv/bin/kopf").read().decode()  # type: ignore[union-attr]
        cfg = tar.extractfile("opt/venv/pyvenv.cfg").read().decode()  # type: ignore[union-attr]
    assert "tidegate:x:10001:10001:" in passwd
    assert kopf.startswith("#!/opt/venv/bin/python\n")
    assert members["opt/venv/bin/kopf"].mode == 0o755
    assert "home = /usr/bin" in cfg
    for link in ("python", "python3"):
        assert members[f"opt/venv/bin/{link}"].linkname == "/usr/bin/python3.11"
    assert members["usr/bin/python3.11"].isfile()
    site = "opt/venv/lib/python3.11/site-packages"
    for pkg in ("onnxruntime", "lightgbm", "kopf", "kubernetes", "numpy"):
        assert members[f"{site}/{pkg}"].isdir(), pkg
    assert not any(f"{site}/tidegate" == n or n.startswith(f"{site}/tidegate/") for n in members)
    assert not any(n.startswith("usr/lib/python3.11/") and n.split("/")[3] in ("test", "tkinter", "idlelib",
                                                                                "dist-packages")
                   for n in members)
    # the dynamic loader, through the host's merged-/usr symlinks
    assert members["lib64"].issym() and members["lib64"].linkname == "usr/lib64"
    assert "usr/lib64/ld-linux-x86-64.so.2" in members
    assert any(n.startswith("usr/lib/x86_64-linux-gnu/libc.so") for n in members)
    assert any(n.startswith("usr/lib/x86_64-linux-gnu/libgomp.so") for n in members)  # lightgbm's OpenMP
    assert members["tmp"].isdir() and members["tmp"].mode == 0o1777
    if Path("/etc/ssl/certs/ca-certificates.crt").exists():
        assert "etc/ssl/certs/ca-certificates.crt" in members
    assert {(m.uid, m.gid) for m in members.values()} == {(0, 0)}


@pytest.mark.parametrize("key", ["services", "operator"])
def test_the_app_layer_holds_the_dockerfiles_copies(oci, key):
    t = oci[key]
    with t.layer(t.layer_digests()[1]) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert "app/tidegate/services/executor.py" in members
    assert "app/config/app.yml" in members
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in members)
    assert "app/config/markets/bybit_v5_linear_instruments.json" not in members  # .dockerignore
    assert {(m.uid, m.gid) for m in members.values()} == {(0, 0)}
    if key == "services":
        assert members["app/app"].isdir() and "app/app/executor/main.py" in members
        assert "app/scripts/train.py" in members and "app/crds" not in members
    else:
        assert "app/crds/modelrelease.yaml" in members and "app/app" not in members


# --------------------------------------------------------------------------------------
# Functional: the extracted layers run as the image would
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rootfs(oci, tmp_path_factory) -> dict[str, Path]:
    _need(os.geteuid() == 0, "chroot needs root")
    out = {}
    for key in ("services", "operator"):
        root = tmp_path_factory.mktemp(f"rootfs-{key}")
        root.chmod(0o755)  # mktemp makes it 0700: the image's "/" must be traversable by its user
        t = oci[key]
        for digest in t.layer_digests():
            fh = t.tar.extractfile("blobs/sha256/" + digest.split(":", 1)[1])
            assert fh is not None
            # GNU tar, as root: ownership, modes and absolute symlinks kept as a runtime would
            subprocess.run(["tar", "-x", "-p", "-C", str(root), "-f", "-"], input=fh.read(), check=True,
                           timeout=300)
        out[key] = root
    return out


def run_in_image(root: Path, config: dict, argv: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    """Run ``argv`` the way runc would for this config: chroot, WorkingDir, User, Env only."""
    uid, gid = (int(x) for x in config["User"].split(":"))
    env = dict(e.split("=", 1) for e in config["Env"])

    def enter() -> None:
        os.chroot(root)
        os.chdir(config["WorkingDir"])
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    return subprocess.run(argv, env=env, preexec_fn=enter, capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_services_imports_run_inside_the_extracted_image(oci, rootfs):
    config = oci["services"].config["config"]
    code = ("import os, sys; import tidegate.services.executor, onnxruntime, lightgbm, kopf, kubernetes, ssl; "
            "print(os.getuid(), os.getcwd(), sys.prefix, tidegate.services.executor.__file__); print('ok')")
    res = run_in_image(rootfs["services"], config, ["/opt/venv/bin/python", "-c", code])
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.splitlines()[-2:] == ["10001 /app /opt/venv /app/tidegate/services/executor.py", "ok"]
    # the image's own command, resolved through the image's PATH
    res = run_in_image(rootfs["services"], config, [*config.get("Entrypoint", []), *config["Cmd"]])
    assert res.returncode == 0 and "Usage" in res.stdout, res.stderr[-3000:]


def test_operator_entrypoint_runs_inside_the_extracted_image(oci, rootfs):
    config = oci["operator"].config["config"]
    res = run_in_image(rootfs["operator"], config, [*config["Entrypoint"], "run", "--help"])
    assert res.returncode == 0 and "Usage: kopf run" in res.stdout, res.stderr[-3000:]
    code = "import tidegate.operator.main; print('ok')"
    res = run_in_image(rootfs["operator"], config, ["python", "-c", code])
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-3000:]


# --------------------------------------------------------------------------------------
# The pause binary
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_pause_exits_zero_on_sigterm_and_sigint(sig):
    pause = need_binary(images.PAUSE_BINARY)
    proc = subprocess.Popen([str(pause)])
    time.sleep(0.3)
    assert proc.poll() is None
    proc.send_signal(sig)
    assert proc.wait(timeout=10) == 0


def test_pause_reaps_orphans_as_pid_1(tmp_path):
    pause = need_binary(images.PAUSE_BINARY)
    _need(os.geteuid() == 0, "a PID namespace needs root")
    proc = subprocess.Popen(["unshare", "--pid", "--fork", str(pause)])
    try:
        pid1 = 0
        for _ in range(50):
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            if children:
                pid1 = int(children[0])
                break
            time.sleep(0.1)
        assert pid1, "pause did not start"
        # a shell in pause's PID namespace leaves a child behind: it is reparented to pause
        subprocess.run(["nsenter", "-t", str(pid1), "-p", "--", "sh", "-c", "sleep 0.2 & exit 0"],
                       check=True, timeout=10)
        kids = Path(f"/proc/{pid1}/task/{pid1}/children").read_text().split()
        assert kids, "the orphan was not reparented to pause (test would prove nothing)"
        deadline = time.monotonic() + 5
        while kids:
            states = [Path(f"/proc/{k}/stat").read_text().rsplit(")", 1)[1].split()[0]
                      for k in kids if Path(f"/proc/{k}/stat").exists()]
            assert time.monotonic() < deadline, f"children of pause not reaped: {kids} {states}"
            time.sleep(0.1)
            kids = Path(f"/proc/{pid1}/task/{pid1}/children").read_text().split()
        os.kill(pid1, signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
