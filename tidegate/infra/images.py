"""The cluster tier's container images, built without an engine, a base image or a registry.

The single-node cluster (``docs/cluster-tests.md``) runs the chart's pods in containerd,
but this machine has no Docker/BuildKit to run ``services/Dockerfile`` and
``operator/Dockerfile``, no ``python:3.11-slim`` base image to start from, and no
registry to pull one from. So the images are written here directly as OCI image-layout
tars that ``ctr -n k8s.io images import`` accepts, from what the host already has:

- ``pause``: the pod sandbox image, one layer holding the static binary built from
  ``scripts/setup/pause`` (sleeps, reaps children, exits 0 on SIGTERM/SIGINT).
- ``services`` and ``operator``: two layers each.

  * a RUNTIME layer, byte-identical in both images so containerd stores it once: the
    host's Python 3.11 (``/usr/bin/python3.11`` + its stdlib), every shared library
    ``ldd`` names for the interpreter, its extension modules and every ``.so`` of the
    dependencies (at the host's absolute paths, symlinks kept), ``/etc/passwd`` and
    ``/etc/group`` with the ``tidegate`` user 10001, ``/tmp``, the CA bundle, and
    ``/opt/venv``: the project's runtime dependencies installed the way the Dockerfiles
    install them (``pip install --prefer-binary .`` minus tidegate itself). It is cached
    under ``<cache>/images`` keyed by the dependency list and the host Python version,
    so only the first build pays for pip (minutes); later builds take seconds.
  * an APP layer per image: what the Dockerfile's runtime stage COPYs from the build
    context (``/app/tidegate``, ``/app/config``, ...), filtered by ``.dockerignore``.

- The image config (User, Env, WorkingDir, ExposedPorts, Entrypoint, Cmd) and the app
  layer's COPY list are parsed from the runtime stage of each Dockerfile, so the
  Dockerfile stays the single description of the image and the two cannot drift.

Every tar is deterministic (sorted entries, fixed mtime, root ownership, normalised
modes), so equal inputs give equal digests, and an unchanged image tar is not rewritten.

CLI (used by ``make setup``): ``python -m tidegate.infra.images build [--out DIR]``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import glob
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import yaml

from tidegate.infra import binaries

REPO_ROOT = binaries.REPO_ROOT
CHART_DIR = REPO_ROOT / "charts" / "tidegate"
DOCKERFILES = {
    "services": REPO_ROOT / "services" / "Dockerfile",
    "operator": REPO_ROOT / "operator" / "Dockerfile",
}
PAUSE_IMAGE = "localhost/tidegate-pause:1.0"
PAUSE_BINARY = "tidegate-pause"
HOST_PYTHON = Path("/usr/bin/python3.11")
PY_VERSION = "3.11"
VENV = "/opt/venv"
SITE_PACKAGES = f"{VENV}/lib/python{PY_VERSION}/site-packages"
APP_UID = 10001
# The PATH of the base image (python:3.11-slim inherits Docker's default); ``$PATH`` in the
# Dockerfile's ENV expands against it.
BASE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}

MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
# A fixed mtime for every tar entry (2000-01-01T00:00:00Z): digests depend on content only.
MTIME = 946684800
# Bump when the runtime layer's recipe changes, so cached layers are rebuilt.
RUNTIME_RECIPE = "1"
# Not part of the runtime image: Debian's dist-packages (host packages), the test suite,
# IDLE, Tk, and the static libpython/Makefile dir (only for building C extensions).
STDLIB_EXCLUDE = {"dist-packages", "site-packages", "test", "idlelib", "tkinter", "turtledemo",
                  f"config-{PY_VERSION}-x86_64-linux-gnu", "__pycache__"}
# dlopen()ed by glibc (pthread_cancel/unwinding), so ldd never names it.
EXTRA_LIBS = ("/lib/x86_64-linux-gnu/libgcc_s.so.1",)


def _log(msg: str) -> None:
    print(f"[images] {msg}", flush=True)


# ---------------------------------------------------------------------------------------
# Dockerfile runtime stage
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Copy:
    """One ``COPY`` of the runtime stage; ``dest`` is absolute (resolved against WORKDIR)."""

    sources: tuple[str, ...]
    dest: str
    chown: str | None = None
    from_stage: str | None = None


@dataclass
class RuntimeStage:
    """What the last ``FROM`` stage of a Dockerfile says about the image it produces."""

    base: str = ""
    user: str = ""
    workdir: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    exposed_ports: list[str] = field(default_factory=list)
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    copies: list[Copy] = field(default_factory=list)

    def oci_config(self) -> dict[str, object]:
        """The ``config`` object of an OCI image config (only the keys that are set)."""
        out: dict[str, object] = {"Env": [f"{k}={v}" for k, v in self.env.items()]}
        if self.user:
            out["User"] = self.user
        if self.workdir:
            out["WorkingDir"] = self.workdir
        if self.exposed_ports:
            out["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.entrypoint is not None:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            out["Cmd"] = list(self.cmd)
        return out


def _logical_lines(text: str) -> Iterator[str]:
    """Dockerfile instructions with ``\\`` continuations joined and comments dropped."""
    buf: list[str] = []
    for raw in text.splitlines():
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # a comment line inside a continuation is ignored by Docker too
        if stripped.endswith("\\"):
            buf.append(stripped[:-1].strip())
            continue
        buf.append(stripped)
        yield " ".join(part for part in buf if part)
        buf = []
    if buf:
        yield " ".join(part for part in buf if part)


_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def _expand(value: str, env: dict[str, str]) -> str:
    return _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), value)


def _exec_form(rest: str) -> list[str]:
    """JSON (exec) form as is; shell form as Docker runs it, through ``/bin/sh -c``."""
    if rest.startswith("["):
        value = json.loads(rest)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"not a JSON string array: {rest}")
        return value
    return ["/bin/sh", "-c", rest]


def parse_dockerfile(text: str, base_env: dict[str, str] | None = None) -> RuntimeStage:
    """Parse the runtime (last ``FROM``) stage of a Dockerfile into what the image needs.

    Pure function (no files, no engine): ENV (``K=V`` pairs, continuation lines, legacy
    ``ENV K V``; ``$VAR``/``${VAR}`` expanded against the stage's env and ARGs, starting
    from ``base_env``), USER, WORKDIR (relative ones join the previous), EXPOSE (``8080`` ->
    ``8080/tcp``), ENTRYPOINT/CMD (exec or shell form; a later ENTRYPOINT clears a CMD set
    before it, as Docker does) and COPY (sources, absolute destination, --chown, --from).
    """
    stage = RuntimeStage()
    args: dict[str, str] = {}
    global_args: dict[str, str] | None = None  # ARGs before the first FROM
    for line in _logical_lines(text):
        word, _, rest = line.partition(" ")
        word, rest = word.upper(), rest.strip()
        if word == "FROM":
            if global_args is None:
                global_args = args
            base = _expand(rest.split()[0], global_args) if rest else ""
            stage = RuntimeStage(base=base, env=dict(base_env or BASE_ENV))
            args = {}
            continue
        scope = {**args, **stage.env}
        if word == "ARG":
            name, _, default = rest.partition("=")
            args[name.strip()] = _expand(default.strip().strip('"'), scope)
        elif word == "ENV":
            tokens = shlex.split(rest)
            if tokens and "=" not in tokens[0]:
                stage.env[tokens[0]] = _expand(" ".join(tokens[1:]), scope)
            else:
                for token in tokens:
                    key, _, value = token.partition("=")
                    # every pair of one ENV line expands against the env before that line
                    stage.env[key] = _expand(value, scope)
        elif word == "USER":
            stage.user = _expand(rest, scope)
        elif word == "WORKDIR":
            stage.workdir = os.path.normpath(os.path.join(stage.workdir, _expand(rest, scope)))
        elif word == "EXPOSE":
            for port in _expand(rest, scope).split():
                stage.exposed_ports.append(port if "/" in port else f"{port}/tcp")
        elif word == "ENTRYPOINT":
            stage.entrypoint = _exec_form(rest)
            stage.cmd = None
        elif word == "CMD":
            stage.cmd = _exec_form(rest)
        elif word in ("COPY", "ADD"):
            tokens = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
            flags = {}
            while tokens and tokens[0].startswith("--"):
                key, _, value = tokens.pop(0)[2:].partition("=")
                flags[key] = value
            *sources, dest = [_expand(t, scope) for t in tokens]
            absolute = os.path.join(stage.workdir, dest)
            if dest.endswith("/"):
                absolute = os.path.normpath(absolute) + "/"
            else:
                absolute = os.path.normpath(absolute)
            stage.copies.append(Copy(tuple(sources), absolute, flags.get("chown"), flags.get("from")))
    return stage


def dockerfile_stage(name: str) -> RuntimeStage:
    return parse_dockerfile(DOCKERFILES[name].read_text())


# ---------------------------------------------------------------------------------------
# .dockerignore
# ---------------------------------------------------------------------------------------
def _ignore_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"(?:/.*)?\Z")


def dockerignore_matcher(text: str) -> Callable[[str], bool]:
    """``ignored(relpath)`` following the Docker rules we use (``**``, ``*``, ``?``, ``!``;
    a pattern that matches a directory excludes everything under it; last match wins)."""
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((negate, _ignore_regex(pattern)))

    def ignored(relpath: str) -> bool:
        result = False
        for negate, rx in rules:
            if rx.match(relpath):
                result = not negate
        return result

    return ignored


# ---------------------------------------------------------------------------------------
# Deterministic tar layers
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Blob:
    digest: str  # "sha256:<hex>"
    size: int

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]

    def descriptor(self, media_type: str) -> dict[str, object]:
        return {"mediaType": media_type, "digest": self.digest, "size": self.size}


class _HashingWriter(io.RawIOBase):
    """A write-only file that hashes what passes through (no second read of 1 GB)."""

    def __init__(self, out: IO[bytes]):
        self.out, self.sha, self.size = out, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.out.write(data)
        self.sha.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def blob(self) -> Blob:
        return Blob(f"sha256:{self.sha.hexdigest()}", self.size)


def _file_mode(st_mode: int) -> int:
    return 0o755 if st_mode & 0o111 else 0o644


@dataclass
class _Entry:
    kind: str  # "dir" | "file" | "link"
    mode: int = 0o755
    src: Path | None = None
    data: bytes | None = None
    target: str = ""


class Layer:
    """An in-memory listing of a layer (paths -> sources), written as a deterministic tar.

    Paths are absolute image paths. Parent directories are added (0755, root) when
    missing; ownership is always root, mtime is ``MTIME``, file modes are 0755/0644.
    """

    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}

    @staticmethod
    def _key(path: str) -> str:
        key = os.path.normpath("/" + path.lstrip("/")).lstrip("/")
        if not key or key == ".":
            raise ValueError(f"not an entry path: {path!r}")
        return key

    def _parents(self, key: str) -> None:
        parent = os.path.dirname(key)
        while parent and parent not in self.entries:
            self.entries[parent] = _Entry("dir")
            parent = os.path.dirname(parent)

    def add_dir(self, path: str, mode: int = 0o755) -> None:
        key = self._key(path)
        self._parents(key)
        self.entries[key] = _Entry("dir", mode=mode)

    def add_file(self, path: str, *, src: Path | None = None, data: bytes | None = None,
                 mode: int | None = None) -> None:
        key = self._key(path)
        self._parents(key)
        if mode is None:
            mode = _file_mode(src.stat().st_mode) if src is not None else 0o644
        self.entries[key] = _Entry("file", mode=mode, src=src, data=data)

    def add_symlink(self, path: str, target: str) -> None:
        key = self._key(path)
        self._parents(key)
        self.entries[key] = _Entry("link", mode=0o777, target=target)

    def add_tree(self, src_dir: Path, dest: str, *, skip: Callable[[Path], bool] | None = None) -> None:
        """A directory's contents at ``dest`` (symlinks kept as symlinks)."""
        self.add_dir(dest)
        for root, dirs, files in os.walk(src_dir):
            rootp = Path(root)
            dirs[:] = [d for d in sorted(dirs) if self._add_path(rootp / d, src_dir, dest, skip)]
            for f in sorted(files):
                self._add_path(rootp / f, src_dir, dest, skip)

    def _add_path(self, p: Path, src_dir: Path, dest: str, skip: Callable[[Path], bool] | None) -> bool:
        """One walked path; True for a real directory, the only kind ``os.walk`` should enter."""
        if skip and skip(p):
            return False
        target = f"{dest}/{p.relative_to(src_dir).as_posix()}"
        if p.is_symlink():
            self.add_symlink(target, os.readlink(p))
        elif p.is_dir():
            self.add_dir(target)
            return True
        elif p.is_file():
            self.add_file(target, src=p)
        return False

    def write(self, out: IO[bytes]) -> Blob:
        """Write the tar to ``out`` and return its digest and size."""
        hasher = _HashingWriter(out)
        with tarfile.open(fileobj=hasher, mode="w", format=tarfile.GNU_FORMAT, copybufsize=1 << 20) as tar:
            for key in sorted(self.entries):
                e = self.entries[key]
                info = tarfile.TarInfo(key)
                info.mtime, info.uid, info.gid, info.uname, info.gname = MTIME, 0, 0, "root", "root"
                info.mode = e.mode
                if e.kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif e.kind == "link":
                    info.type, info.linkname = tarfile.SYMTYPE, e.target
                    tar.addfile(info)
                elif e.data is not None:
                    info.size = len(e.data)
                    tar.addfile(info, io.BytesIO(e.data))
                else:
                    assert e.src is not None
                    with e.src.open("rb") as fh:
                        info.size = os.fstat(fh.fileno()).st_size
                        tar.addfile(info, fh)
        return hasher.blob()

    def write_file(self, path: Path) -> Blob:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("wb") as fh:
                blob = self.write(fh)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return blob


# Directories whose mode is not the usual 0755.
DIR_MODES = {"/tmp": 0o1777, "/root": 0o700}


def layer_from_rootfs(root: Path) -> Layer:
    """Every file, directory and symlink under a staged root, with normalised modes
    (0755 directories except ``DIR_MODES``, 0755/0644 files), whatever the umask was."""
    layer = Layer()
    for dirpath, dirs, files in os.walk(root):
        here = Path(dirpath)
        for name in sorted(dirs):
            p = here / name
            image_path = "/" + p.relative_to(root).as_posix()
            if p.is_symlink():
                layer.add_symlink(image_path, os.readlink(p))
            else:
                layer.add_dir(image_path, mode=DIR_MODES.get(image_path, 0o755))
        for name in sorted(files):
            p = here / name
            image_path = "/" + p.relative_to(root).as_posix()
            if p.is_symlink():
                layer.add_symlink(image_path, os.readlink(p))
            elif p.is_file():
                layer.add_file(image_path, src=p)
    return layer


# ---------------------------------------------------------------------------------------
# The runtime layer
# ---------------------------------------------------------------------------------------
def runtime_dependencies(pyproject: Path | None = None) -> list[str]:
    """``[project].dependencies``: what ``pip install .`` pulls in besides tidegate itself
    (no extras: the images never get ``dev`` or ``local``)."""
    data = tomllib.loads((pyproject or REPO_ROOT / "pyproject.toml").read_text())
    return list(data["project"]["dependencies"])


def host_python_version() -> str:
    if not HOST_PYTHON.is_file():
        raise FileNotFoundError(f"{HOST_PYTHON} not found: the images reuse the host's Debian python{PY_VERSION}"
                                f" (apt package python{PY_VERSION})")
    res = subprocess.run([str(HOST_PYTHON), "-c", "import sys; print(sys.version)"],
                         capture_output=True, text=True, check=True, timeout=30)
    return res.stdout.strip()


def runtime_key() -> str:
    """Cache key of the runtime layer: the dependency list, the host Python and the recipe."""
    text = json.dumps({"deps": runtime_dependencies(), "python": host_python_version(),
                       "recipe": RUNTIME_RECIPE}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _replicate(host_path: str, root: Path, depth: int = 0) -> None:
    """Copy ``host_path`` into ``root`` at the same absolute path, recreating every symlink
    met on the way (directory symlinks such as /lib -> usr/lib, and the final one) as a
    symlink and following it. Never writes through a symlink inside ``root``."""
    if depth > 40:
        raise RuntimeError(f"symlink loop at {host_path}")
    parts = [p for p in host_path.split("/") if p]
    cur = "/"
    for i, part in enumerate(parts):
        host = os.path.join(cur, part)
        dst = root / host.lstrip("/")
        if os.path.islink(host):
            target = os.readlink(host)
            if not os.path.lexists(dst):
                os.symlink(target, dst)
            resolved = target if target.startswith("/") else os.path.normpath(os.path.join(cur, target))
            _replicate(os.path.join(resolved, *parts[i + 1:]), root, depth + 1)
            return
        if i == len(parts) - 1:
            if os.path.isdir(host):
                dst.mkdir(exist_ok=True)
            elif not dst.exists():
                shutil.copyfile(host, dst)
                os.chmod(dst, _file_mode(os.stat(host).st_mode))
        else:
            if not os.path.isdir(host):
                raise FileNotFoundError(host)
            dst.mkdir(exist_ok=True)
        cur = host


def _ldd(paths: list[Path]) -> tuple[set[str], set[str]]:
    """Libraries ldd resolves for ``paths`` (absolute paths), and the names it cannot find."""
    found: set[str] = set()
    missing: set[str] = set()
    for i in range(0, len(paths), 64):
        res = subprocess.run(["ldd", *map(str, paths[i:i + 64])], capture_output=True, text=True,
                             check=False, timeout=300)
        for line in res.stdout.splitlines():
            if not line.startswith("\t"):
                continue  # "<file>:" headers of a multi-file run
            line = line.strip()
            if "=> not found" in line:
                missing.add(line.split()[0])
            elif "=>" in line:
                target = line.split("=>", 1)[1].split("(")[0].strip()
                if target.startswith("/"):
                    found.add(target)
            elif line.startswith("/"):
                found.add(line.split("(")[0].strip())  # the dynamic loader
    return found, missing


def _is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


PASSWD = ("root:x:0:0:root:/root:/usr/sbin/nologin\n"
          f"tidegate:x:{APP_UID}:{APP_UID}:tidegate:/app:/usr/sbin/nologin\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
GROUP = f"root:x:0:\ntidegate:x:{APP_UID}:\nnogroup:x:65534:\n"
NSSWITCH = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def _stage_runtime(root: Path) -> None:
    """Fill ``root`` with the runtime rootfs (see the module docstring)."""
    site = root / SITE_PACKAGES.lstrip("/")
    site.mkdir(parents=True)
    deps = runtime_dependencies()
    t0 = time.monotonic()
    _log(f"pip: {len(deps)} runtime dependencies into {SITE_PACKAGES} (prefer binary)")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"}
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-warn-conflicts",
                    "--no-compile", "--prefer-binary", "--target", str(site), *deps],
                   check=True, env=env, timeout=3600)
    _log(f"pip done in {time.monotonic() - t0:.1f} s")

    # console scripts: pip --target puts them in site-packages/bin with this venv's shebang
    venv_bin = root / VENV.lstrip("/") / "bin"
    venv_bin.mkdir(parents=True)
    scripts = site / "bin"
    if scripts.is_dir():
        for script in sorted(scripts.iterdir()):
            data = script.read_bytes()
            if data.startswith(b"#!") and b"python" in data.split(b"\n", 1)[0]:
                data = b"#!" + VENV.encode() + b"/bin/python\n" + data.split(b"\n", 1)[1]
            (venv_bin / script.name).write_bytes(data)
            os.chmod(venv_bin / script.name, 0o755)
        shutil.rmtree(scripts)
    for name in ("python", "python3", f"python{PY_VERSION}"):
        (venv_bin / name).symlink_to(str(HOST_PYTHON))
    version = host_python_version().split()[0]
    (root / VENV.lstrip("/") / "pyvenv.cfg").write_text(
        f"home = {HOST_PYTHON.parent}\ninclude-system-site-packages = false\nversion = {version}\n"
        f"executable = {HOST_PYTHON}\n")
    for cache in list(site.rglob("__pycache__")):
        shutil.rmtree(cache, ignore_errors=True)

    # the interpreter and its stdlib (symlinks kept; targets outside it copied too)
    _replicate(str(HOST_PYTHON), root)
    stdlib = Path(f"/usr/lib/python{PY_VERSION}")
    outside: list[str] = []
    for dirpath, dirs, files in os.walk(stdlib):
        here = Path(dirpath)
        dirs[:] = sorted(d for d in dirs if d not in STDLIB_EXCLUDE)
        dst_dir = root / here.relative_to("/")
        dst_dir.mkdir(parents=True, exist_ok=True)
        for name in [*dirs, *sorted(files)]:
            p = here / name
            if name.startswith("_tkinter") or name.endswith((".pyc", ".pyo")):
                continue
            dst = dst_dir / name
            if p.is_symlink():
                target = os.readlink(p)
                dst.symlink_to(target)
                resolved = os.path.normpath(os.path.join(here, target))
                if not resolved.startswith(f"{stdlib}/"):
                    outside.append(resolved)
                if p.is_dir():
                    dirs.remove(name)
            elif p.is_file():
                shutil.copyfile(p, dst)
                os.chmod(dst, _file_mode(p.stat().st_mode))
    for path in outside:
        if os.path.exists(path):
            _replicate(path, root)

    # bytecode: unchecked-hash .pyc (valid whatever the mtime, deterministic), compiled by the
    # image's own interpreter; without it every pod start recompiles kubernetes & co (~2x slower)
    t0 = time.monotonic()
    subprocess.run([str(HOST_PYTHON), "-m", "compileall", "-q", "-q", "-j", "0", "--invalidation-mode",
                    "unchecked-hash", "-s", str(root), "-p", "/",
                    str(root / stdlib.relative_to("/")), str(site)],
                   check=False, timeout=3600, stdout=subprocess.DEVNULL)
    _log(f"compileall (unchecked-hash) done in {time.monotonic() - t0:.1f} s")

    # the shared-library closure of the interpreter, its extension modules and every .so
    elves = [HOST_PYTHON] + [p for p in stdlib.glob("lib-dynload/*.so") if not p.name.startswith("_tkinter")]
    elves += [p for p in site.rglob("*.so*") if p.is_file() and not p.is_symlink() and _is_elf(p)]
    libs, missing = _ldd(elves)
    bundled = {p.name for p in site.rglob("*.so*")}
    unresolved = sorted(m for m in missing if m not in bundled)
    if unresolved:
        _log(f"WARNING: ldd cannot resolve {', '.join(unresolved)} (not on the host, not in site-packages)")
    host_libs = sorted(lib for lib in libs if not lib.startswith(str(root)))
    for lib in [*host_libs, *(lib for lib in EXTRA_LIBS if os.path.exists(lib))]:
        _replicate(lib, root)
    _log(f"{len(host_libs)} host libraries for {len(elves)} ELF files")

    # merged /usr: /bin, /sbin, /lib, /lib64 are the host's symlinks into /usr
    for top in ("bin", "sbin", "lib", "lib64"):
        if os.path.islink(f"/{top}") and not os.path.lexists(root / top):
            os.symlink(os.readlink(f"/{top}"), root / top)

    # users, groups, /tmp, certificates
    etc = root / "etc"
    etc.mkdir(exist_ok=True)
    for name, text in (("passwd", PASSWD), ("group", GROUP), ("nsswitch.conf", NSSWITCH), ("hosts", HOSTS)):
        (etc / name).write_text(text)
    for path in ("/etc/ssl/certs/ca-certificates.crt", "/usr/lib/ssl/cert.pem"):
        if os.path.exists(path):
            _replicate(path, root)
    for d, mode in (("tmp", 0o1777), ("root", 0o700)):
        (root / d).mkdir(exist_ok=True)
        os.chmod(root / d, mode)


@dataclass(frozen=True)
class CachedLayer:
    path: Path
    blob: Blob
    reused: bool
    seconds: float


def images_cache_dir() -> Path:
    return binaries.cache_dir() / "images"


def runtime_layer(*, rebuild: bool = False) -> CachedLayer:
    """The shared runtime layer tar, from the cache when its key matches (seconds), else
    built (pip, compileall, ldd: minutes) and cached; older cached versions are removed."""
    t0 = time.monotonic()
    cache = images_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    key = runtime_key()
    tar_path, meta_path = cache / f"runtime-{key}.tar", cache / f"runtime-{key}.json"
    if not rebuild and tar_path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("size") == tar_path.stat().st_size:
            return CachedLayer(tar_path, Blob(meta["digest"], meta["size"]), True, time.monotonic() - t0)
    _log(f"building the runtime layer {key} (cold: a few minutes)")
    with tempfile.TemporaryDirectory(prefix="runtime-", dir=cache) as tmp:
        root = Path(tmp) / "rootfs"
        root.mkdir()
        _stage_runtime(root)
        blob = layer_from_rootfs(root).write_file(tar_path)
    meta_path.write_text(json.dumps({"digest": blob.digest, "size": blob.size, "key": key,
                                     "python": host_python_version(), "deps": runtime_dependencies()},
                                    indent=1) + "\n")
    for old in cache.glob("runtime-*"):
        if old.suffix in (".tar", ".json") and key not in old.name:
            old.unlink(missing_ok=True)
    seconds = time.monotonic() - t0
    _log(f"runtime layer {blob.digest[:19]} {blob.size / 1e6:.0f} MB in {seconds:.1f} s")
    return CachedLayer(tar_path, blob, False, seconds)


# ---------------------------------------------------------------------------------------
# The app layer
# ---------------------------------------------------------------------------------------
def app_layer(stage: RuntimeStage, context: Path = REPO_ROOT) -> Layer:
    """What the runtime stage COPYs from the build context (not ``--from``), with the
    context filtered by ``.dockerignore`` as the engine would, plus the WORKDIR itself."""
    ignore_file = context / ".dockerignore"
    ignored = dockerignore_matcher(ignore_file.read_text() if ignore_file.exists() else "")
    layer = Layer()
    if stage.workdir and stage.workdir != "/":
        layer.add_dir(stage.workdir)

    def skip(p: Path) -> bool:
        return ignored(p.relative_to(context).as_posix())

    for copy in stage.copies:
        if copy.from_stage is not None:
            continue
        matches: list[Path] = []
        for source in copy.sources:
            hits = sorted(glob.glob(str(context / source))) if glob.has_magic(source) else [str(context / source)]
            matches += [Path(h) for h in hits if not skip(Path(h))]
        if not matches:
            raise FileNotFoundError(f"COPY {' '.join(copy.sources)}: nothing in the build context")
        into_dir = copy.dest.endswith("/") or len(matches) > 1
        for src in matches:
            if src.is_dir():
                layer.add_tree(src, copy.dest.rstrip("/") or "/", skip=skip)
            else:
                dest = f"{copy.dest.rstrip('/')}/{src.name}" if into_dir else copy.dest
                layer.add_file(dest, src=src)
    return layer


# ---------------------------------------------------------------------------------------
# OCI image layout
# ---------------------------------------------------------------------------------------
def _json_bytes(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def chart_image_refs(chart_dir: Path = CHART_DIR) -> dict[str, str]:
    """The image references the chart renders by default: ``<registry>/<name>:<appVersion>``
    (values.yaml ``image.tag`` empty -> Chart.yaml ``appVersion``)."""
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    values = yaml.safe_load((chart_dir / "values.yaml").read_text())["image"]
    tag = values.get("tag") or str(chart["appVersion"])
    return {name: f"{values['registry']}/{values[name]}:{tag}" for name in ("services", "operator")}


@dataclass(frozen=True)
class OciImage:
    """One image before it is written: its reference, config and layers (blob + source)."""

    key: str
    name: str
    config: dict[str, object]
    layers: tuple[tuple[Blob, Path | bytes], ...]

    @property
    def config_bytes(self) -> bytes:
        return _json_bytes(self.config)

    @property
    def config_blob(self) -> Blob:
        data = self.config_bytes
        return Blob(f"sha256:{hashlib.sha256(data).hexdigest()}", len(data))

    @property
    def manifest_bytes(self) -> bytes:
        return _json_bytes({"schemaVersion": 2, "mediaType": MT_MANIFEST,
                            "config": self.config_blob.descriptor(MT_CONFIG),
                            "layers": [blob.descriptor(MT_LAYER) for blob, _ in self.layers]})

    @property
    def manifest_blob(self) -> Blob:
        data = self.manifest_bytes
        return Blob(f"sha256:{hashlib.sha256(data).hexdigest()}", len(data))

    def index_entry(self) -> dict[str, object]:
        last = self.name.rsplit("/", 1)[-1]
        tag = last.rsplit(":", 1)[1] if ":" in last else "latest"
        return {**self.manifest_blob.descriptor(MT_MANIFEST),
                "platform": {"architecture": str(self.config["architecture"]), "os": str(self.config["os"])},
                "annotations": {"io.containerd.image.name": self.name, "org.opencontainers.image.ref.name": tag}}


@dataclass(frozen=True)
class ImageTar:
    """An OCI image-layout tar, ready for ``ctr -n k8s.io images import <path>``."""

    key: str
    name: str
    path: Path
    manifest_digest: str
    layers: tuple[str, ...]
    size: int
    seconds: float
    rewritten: bool


def _index_of(path: Path) -> bytes | None:
    with contextlib.suppress(OSError, tarfile.TarError, KeyError), tarfile.open(path) as tar:
        member = tar.extractfile("index.json")
        return member.read() if member else None
    return None


def write_oci_layout(path: Path, images: list[OciImage]) -> bool:
    """Write an OCI image-layout tar holding ``images``; True when it was (re)written.

    Each manifest descriptor in ``index.json`` carries ``io.containerd.image.name`` (the
    name ctr imports it as) and ``org.opencontainers.image.ref.name`` (the tag). A blob
    shared by several images is stored once. An existing tar with the same index (so the
    same manifests, configs and layers: everything is content-addressed) is left alone.
    """
    index_bytes = _json_bytes({"schemaVersion": 2, "mediaType": MT_INDEX,
                               "manifests": [image.index_entry() for image in images]})
    if path.is_file() and _index_of(path) == index_bytes:
        return False

    def info(arcname: str, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(arcname)
        ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = MTIME, 0, 0, "root", "root"
        ti.type, ti.mode, ti.size = (tarfile.DIRTYPE, 0o755, 0) if directory else (tarfile.REGTYPE, 0o644, size)
        return ti

    blobs: dict[str, tuple[Blob, Path | bytes]] = {}
    for image in images:
        for blob, src in [*image.layers, (image.config_blob, image.config_bytes),
                          (image.manifest_blob, image.manifest_bytes)]:
            blobs.setdefault(blob.hex, (blob, src))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT, copybufsize=1 << 20) as tar:
            layout = _json_bytes({"imageLayoutVersion": "1.0.0"})
            for arcname, data in (("oci-layout", layout), ("index.json", index_bytes)):
                tar.addfile(info(arcname, len(data)), io.BytesIO(data))
            tar.addfile(info("blobs", directory=True))
            tar.addfile(info("blobs/sha256", directory=True))
            for hexdigest in sorted(blobs):
                blob, src = blobs[hexdigest]
                if isinstance(src, bytes):
                    tar.addfile(info(f"blobs/sha256/{hexdigest}", blob.size), io.BytesIO(src))
                else:
                    with src.open("rb") as fh:
                        if os.fstat(fh.fileno()).st_size != blob.size:
                            raise RuntimeError(f"{src} changed size: not the blob {blob.digest}")
                        tar.addfile(info(f"blobs/sha256/{hexdigest}", blob.size), fh)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def _image_config(stage_config: dict[str, object], diff_ids: list[str], history: list[str],
                  labels: dict[str, str]) -> dict[str, object]:
    return {"architecture": "amd64", "os": "linux",
            "config": {**stage_config, "Labels": labels},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": h, "comment": "tidegate.infra.images"} for h in history]}


def _tar_name(name: str) -> str:
    return name.rsplit("/", 1)[-1].replace(":", "-") + ".oci.tar"


BUNDLE_TAR = "tidegate-images.oci.tar"


@contextlib.contextmanager
def _lock(cache: Path) -> Iterator[None]:
    """One build at a time per cache dir (``make setup`` and a test run may overlap)."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def pause_binary() -> Path:
    """The static pause binary ``scripts/setup/build-images.sh`` builds (``make setup``)."""
    return binaries.require(PAUSE_BINARY)


def pause_image() -> OciImage:
    layer = Layer()
    layer.add_file("/pause", src=pause_binary(), mode=0o755)
    buf = io.BytesIO()
    blob = layer.write(buf)
    config = _image_config({"Entrypoint": ["/pause"], "User": "65535:65535", "WorkingDir": "/",
                            "Env": [f"PATH={BASE_ENV['PATH']}"]},
                           [blob.digest], ["/pause: scripts/setup/pause (static Go)"],
                           {"org.opencontainers.image.title": "tidegate-pause"})
    return OciImage("pause", PAUSE_IMAGE, config, ((blob, buf.getvalue()),))


def app_image(key: str, name: str, runtime: CachedLayer) -> OciImage:
    """``services`` or ``operator``: the shared runtime layer + the Dockerfile's COPYs,
    with the config of the Dockerfile's runtime stage."""
    stage = dockerfile_stage(key)
    buf = io.BytesIO()
    app_blob = app_layer(stage).write(buf)
    dockerfile = DOCKERFILES[key].relative_to(REPO_ROOT).as_posix()
    config = _image_config(stage.oci_config(), [runtime.blob.digest, app_blob.digest],
                           [f"runtime: host python{PY_VERSION} + ldd closure + {VENV} (pip --prefer-binary)",
                            f"app: COPY lines of {dockerfile}"],
                           {"org.opencontainers.image.title": name.rsplit("/", 1)[-1].split(":")[0],
                            "org.opencontainers.image.version": name.rsplit(":", 1)[1],
                            "io.tidegate.dockerfile": dockerfile})
    return OciImage(key, name, config, ((runtime.blob, runtime.path), (app_blob, buf.getvalue())))


def _write(image: OciImage, out: Path) -> ImageTar:
    t0 = time.monotonic()
    path = out / _tar_name(image.name)
    rewritten = write_oci_layout(path, [image])
    return ImageTar(image.key, image.name, path, image.manifest_blob.digest,
                    tuple(blob.digest for blob, _ in image.layers), path.stat().st_size,
                    time.monotonic() - t0, rewritten)


@dataclass(frozen=True)
class BuildResult:
    images: dict[str, ImageTar]
    runtime: CachedLayer
    bundle: ImageTar | None


def build(out_dir: Path | None = None, *, rebuild_runtime: bool = False, bundle: bool = False) -> BuildResult:
    """``build_images`` plus what the CLI reports: the runtime layer (cached or built) and,
    with ``bundle``, one more tar holding all three images (``ctr`` streams and hashes every
    blob of a tar it imports, even one it already has: importing the bundle once reads the
    1 GB runtime layer once instead of twice)."""
    out = Path(out_dir) if out_dir is not None else images_cache_dir()
    refs = chart_image_refs()
    with _lock(images_cache_dir()):
        runtime = runtime_layer(rebuild=rebuild_runtime)
        todo = [pause_image(), *(app_image(key, refs[key], runtime) for key in ("services", "operator"))]
        images = {image.key: _write(image, out) for image in todo}
        all_tar = None
        if bundle:
            t0 = time.monotonic()
            path = out / BUNDLE_TAR
            rewritten = write_oci_layout(path, todo)
            all_tar = ImageTar("bundle", ",".join(i.name for i in todo), path, "",
                               tuple(sorted({b.digest for i in todo for b, _ in i.layers})),
                               path.stat().st_size, time.monotonic() - t0, rewritten)
    return BuildResult(images, runtime, all_tar)


def build_images(out_dir: Path | None = None, *, rebuild_runtime: bool = False) -> dict[str, ImageTar]:
    """Build ``pause``, ``services`` and ``operator`` as OCI image-layout tars in ``out_dir``
    (default ``<cache>/images``); returns them by key. The services/operator names are the
    ones the chart renders, so ``imagePullPolicy: Never`` pods find them after import."""
    return build(out_dir, rebuild_runtime=rebuild_runtime).images


def bundle_tar(out_dir: Path | None = None) -> ImageTar:
    """All three images in one tar (one ``ctr images import`` instead of three)."""
    result = build(out_dir, bundle=True)
    assert result.bundle is not None
    return result.bundle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tidegate.infra.images", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("build", help="build the pause, services and operator image tars")
    cmd.add_argument("--out", type=Path, default=None, help="output directory (default <cache>/images)")
    cmd.add_argument("--rebuild-runtime", action="store_true", help="ignore the cached runtime layer")
    cmd.add_argument("--no-bundle", action="store_true", help=f"do not write {BUNDLE_TAR} (all three in one tar)")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    result = build(args.out, rebuild_runtime=args.rebuild_runtime, bundle=not args.no_bundle)
    runtime = result.runtime
    print(f"runtime layer {runtime.blob.digest[:19]} {runtime.blob.size / 1e6:.0f} MB "
          f"{'cached' if runtime.reused else 'built'} in {runtime.seconds:.1f} s")
    rows = [*result.images.values(), *([result.bundle] if result.bundle else [])]
    for image in rows:
        state = "written" if image.rewritten else "unchanged"
        name = image.name if image.key != "bundle" else f"({len(result.images)} images)"
        print(f"{image.key:9s} {name:42s} {image.size / 1e6:7.1f} MB {image.seconds:5.1f} s  {state:9s} {image.path}")
    print(f"images built in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
