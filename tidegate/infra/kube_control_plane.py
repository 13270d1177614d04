"""kube-apiserver + etcd on loopback, the envtest way, for tests and local experiments.

A bare control plane: no controllers, no scheduler, no kubelet. That is enough
for CRDs, custom resources, status subresources, Events, RBAC and server-side
dry runs, which is what the operator needs. Certificates come from a throwaway
CA made with ``cryptography``; clients authenticate with a static bearer token
(``system:masters``), which kubectl, the ``kubernetes`` client and kopf accept.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
import ssl
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tidegate.infra import binaries
from tidegate.infra.process import ServerProcess, free_port


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, key_encipherment=not ca, key_cert_sign=ca, crl_sign=ca,
                         content_commitment=False, data_encipherment=False, key_agreement=False,
                         encipher_only=False, decipher_only=False)


def write_certificates(d: Path) -> None:
    """CA, apiserver serving cert for 127.0.0.1/localhost, and a service-account key pair.

    The CA key is kept beside its certificate so that ``issue_certificate`` can sign the
    node tier's client and serving certificates from the same root."""
    now = dt.datetime.now(dt.UTC)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tidegate-envtest-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(_usage(ca=True), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    d.mkdir(parents=True, exist_ok=True)
    (d / "ca.crt").write_bytes(_pem_cert(ca))
    (d / "ca.key").write_bytes(_pem_key(ca_key))
    issue_certificate(d, "apiserver", "kube-apiserver", server=True)
    sa_key = _key()
    (d / "sa.key").write_bytes(_pem_key(sa_key))
    (d / "sa.pub").write_bytes(sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def issue_certificate(d: Path, name: str, common_name: str, *, orgs: tuple[str, ...] = (),
                      server: bool = False) -> tuple[Path, Path]:
    """``<name>.crt``/``<name>.key`` signed by the CA in ``d``: a serving certificate for
    127.0.0.1/localhost when ``server``, else a client certificate (CN = user, O = groups)."""
    ca = x509.load_pem_x509_certificate((d / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, rsa.RSAPrivateKey)
    now = dt.datetime.now(dt.UTC)
    key = _key()
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, common_name),
               *(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs)]
    builder = (x509.CertificateBuilder().subject_name(x509.Name(subject)).issuer_name(ca.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=3650))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(_usage(ca=False), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    if server:
        builder = (builder.add_extension(x509.SubjectAlternativeName([
                       x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    crt, pem = d / f"{name}.crt", d / f"{name}.key"
    crt.write_bytes(_pem_cert(cert))
    pem.write_bytes(_pem_key(key))
    return crt, pem


class KubeControlPlane:
    """``node=True`` prepares it for a kubelet (see ``tidegate.infra.kube_node``): the Node and
    RBAC authorizers, the ServiceAccount admission plugin (pods get projected tokens), a client
    certificate for the apiserver-to-kubelet connection, and a bearer token per extra user."""

    def __init__(self, workdir: Path, *, node: bool = False, port: int | None = None,
                 extra_users: dict[str, tuple[str, ...]] | None = None):
        self.workdir = workdir
        self.node = node
        self.extra_users = dict(extra_users or {})
        self.user_tokens: dict[str, str] = {}
        self.apiserver_bin = binaries.require("kube-apiserver")
        self.etcd_bin = binaries.require("etcd")
        kubectl = binaries.find("kubectl")
        self.kubectl_bin = kubectl if isinstance(kubectl, Path) else None
        self.etcd_port, self.etcd_peer_port = free_port(), free_port()
        self.port = port or free_port()
        self.token = secrets.token_hex(16)
        self.kubeconfig = workdir / "kubeconfig"
        self._etcd: ServerProcess | None = None
        self._apiserver: ServerProcess | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "pki" / "ca.crt"

    def _etcd_healthy(self) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.etcd_port}/health", timeout=1) as r:
            return b'"true"' in r.read()

    def _apiserver_ready(self) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        req = urllib.request.Request(f"{self.url}/readyz", headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=2, context=ctx) as r:
            return r.read().strip() == b"ok"

    def start(self, timeout: float = 120.0) -> KubeControlPlane:
        pki = self.workdir / "pki"
        write_certificates(pki)
        lines = [f"{self.token},tidegate-admin,tidegate-admin,system:masters"]
        for user, groups in self.extra_users.items():
            self.user_tokens[user] = secrets.token_hex(16)
            lines.append(f'{self.user_tokens[user]},{user},{user},"{",".join(groups)}"')
        (pki / "tokens.csv").write_text("\n".join(lines) + "\n")
        node_args: list[str | Path] = ["--authorization-mode=RBAC", "--disable-admission-plugins=ServiceAccount"]
        if self.node:
            crt, key = issue_certificate(pki, "apiserver-kubelet-client", "kube-apiserver-kubelet-client",
                                         orgs=("system:masters",))
            node_args = ["--authorization-mode=Node,RBAC", f"--kubelet-client-certificate={crt}",
                         f"--kubelet-client-key={key}", "--kubelet-preferred-address-types=InternalIP",
                         "--api-audiences=https://kubernetes.default.svc.cluster.local"]
        self._etcd = ServerProcess("etcd", [
            self.etcd_bin, "--name=default", f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{self.etcd_port}",
            f"--advertise-client-urls=http://127.0.0.1:{self.etcd_port}",
            f"--listen-peer-urls=http://127.0.0.1:{self.etcd_peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{self.etcd_peer_port}",
            f"--initial-cluster=default=http://127.0.0.1:{self.etcd_peer_port}",
            "--unsafe-no-fsync", "--log-level=warn",
        ], self.workdir / "etcd.log").start()
        self._etcd.wait_ready(self._etcd_healthy, 30, "healthy")
        self._apiserver = ServerProcess("kube-apiserver", [
            self.apiserver_bin, f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.port}",
            "--endpoint-reconciler-type=none",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--token-auth-file={pki / 'tokens.csv'}", f"--client-ca-file={pki / 'ca.crt'}",
            *node_args,
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            f"--cert-dir={self.workdir / 'certs'}", "--v=0",
        ], self.workdir / "kube-apiserver.log").start()
        self._apiserver.wait_ready(self._apiserver_ready, timeout, "ready (/readyz)")
        self.write_kubeconfig()
        return self

    def write_kubeconfig(self, path: Path | None = None, *, user: str | None = None) -> Path:
        """The admin kubeconfig, or with ``user`` one that authenticates as that extra user."""
        path = path or self.kubeconfig
        token = self.user_tokens[user] if user else self.token
        path.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: tidegate-envtest\n  cluster:\n    server: {self.url}\n"
            f"    certificate-authority: {self.ca_file}\n"
            f"users:\n- name: tidegate-admin\n  user:\n    token: {token}\n"
            "contexts:\n- name: tidegate-envtest\n  context:\n    cluster: tidegate-envtest\n"
            "    user: tidegate-admin\n    namespace: default\n"
            "current-context: tidegate-envtest\n")
        return path

    def kubectl_env(self) -> dict[str, str]:
        """A minimal environment for kubectl/helm against this control plane (cache kept out of the cwd)."""
        return {"KUBECONFIG": str(self.kubeconfig), "PATH": "/usr/bin:/bin",
                "KUBECACHEDIR": str(self.kubeconfig.parent / "kubectl-cache")}

    def stop(self) -> None:
        if self._apiserver:
            self._apiserver.stop()
        if self._etcd:
            self._etcd.stop()
