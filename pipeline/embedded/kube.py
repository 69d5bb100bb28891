"""A real Kubernetes API server (kube-apiserver v1.31.3 on etcd) on loopback, for integration tests and
the Kubernetes watcher.

There is no kubelet, scheduler or controller-manager: objects are stored and served, RBAC, admission,
watches, optimistic concurrency and field validation are real, but nothing acts on them. Tests set a
pod's ``nodeName`` themselves and patch ``pods/status`` to play the kubelet (CrashLoopBackOff, OOMKilled).

:class:`pipeline.embedded.kube_cluster.KubeCluster` adds kube-controller-manager, kube-scheduler (same version, same build script) and
kwok v0.8.0 playing the kubelet for one fake node, plus the ArgoCD ``Application`` and a sample
``Memcached`` CRD: Deployments then roll out to Running, Ready pods, without containers.

Binaries: ``kube-apiserver`` is built from the Go module proxy by ``scripts/build-kube-apiserver.sh``
(cached in ``<Settings.cache_dir>/kube/v1.31.3``, ``~/.cache/pipeline`` by default; ``KUBE_APISERVER_BINARY`` overrides, then ``PATH``);
``etcd`` comes from Debian's ``etcd-server`` (the same script installs it; ``ETCD_BINARY`` overrides).
Tests never skip when they are missing: :class:`ComponentMissingError` fails them with the command.

Everything listens on 127.0.0.1 only: etcd's client and peer ports (plain HTTP) and the API server's
secure port, TLS with a CA generated in the workdir (``openssl``). Authentication is a static token
file: ``admin`` (group ``system:masters``) and ``pipeline-restricted`` (no group beyond
``system:authenticated``, so it can do almost nothing until a test grants it a Role).

Usage::

    with KubeAPIServer(tmp_path) as kube:                  # ~3.5 s to /readyz
        async with kube.api_client() as api:               # kubernetes_asyncio ApiClient as admin
            await CoreV1Api(api).create_namespace({"metadata": {"name": "shop"}})
        kube.kubeconfig(tmp_path / "kubeconfig", user="pipeline-restricted")
        kube.restart_apiserver()                           # etcd keeps the data; clients reconnect

``stop_apiserver()`` / ``start_apiserver()`` make an outage of any length (connections refused) while
etcd keeps running. A watch resumed after a restart from a resourceVersion older than the restarted
server's watch cache gets ``410 Expired``, as in a real cluster.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import httpx
import yaml

from pipeline.config import load_settings
from pipeline.embedded.process import ComponentMissingError, ServerProcess, free_port, new_workdir

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient, Configuration

__all__ = [
    "ADMIN_USER",
    "KUBE_VERSION",
    "RESTRICTED_USER",
    "ComponentMissingError",
    "KubeAPIServer",
    "etcd_binary",
    "kube_apiserver_binary",
]

KUBE_VERSION = "v1.31.3"
BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build-kube-apiserver.sh"
ADMIN_USER = "admin"
RESTRICTED_USER = "pipeline-restricted"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

# Error lines in the logs: klog (``E1122 04:20:33.598790 ...``) and etcd's zap JSON.
_ERROR_LINE = re.compile(r'^[EF]\d{4} |"level":"(error|fatal|panic)"|level=(error|fatal)')

_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[serving]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = IP:127.0.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, \
DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local
"""


def service_account_review(account: str, namespace: str, verb: str, group: str, resource: str, where: str = "",
                           subresource: str = "", name: str = "") -> dict[str, Any]:
    """A SubjectAccessReview body: may the ServiceAccount `namespace/account` (with the groups every
    ServiceAccount token carries) `verb` `resource` of `group` in the namespace `where` (empty: cluster-wide)?
    POST it as the admin to `/apis/authorization.k8s.io/v1/subjectaccessreviews`; `status.allowed` answers."""
    attributes = {"verb": verb, "group": group, "resource": resource, "subresource": subresource, "name": name}
    if where:
        attributes["namespace"] = where
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {
        "user": f"system:serviceaccount:{namespace}:{account}",
        "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
        "resourceAttributes": attributes}}


def kube_cache_dir(cache_dir: Path | None = None) -> Path:
    """``<cache_dir>/kube``, where the build script puts the Kubernetes binaries; ``cache_dir`` defaults to
    ``Settings.cache_dir`` (``PIPELINE_CACHE_DIR``, ``~/.cache/pipeline``)."""
    return (cache_dir if cache_dir is not None else load_settings().cache_dir) / "kube"


def _missing(problem: str, override: str, kube_cache: Path) -> ComponentMissingError:
    return ComponentMissingError(
        f"{problem}. Build/install it with:\n"
        f"    bash {BUILD_SCRIPT}\n"
        f"(builds kube-apiserver, kube-controller-manager and kube-scheduler {KUBE_VERSION} and kwok into "
        f"{kube_cache} from the Go module proxy, ~10 min cold, and installs Debian's etcd-server; or "
        f"set {override} to a binary)."
    )


def _binary(name: str, override_env: str, kube_cache: Path, cached: Path | None = None) -> str:
    """`override_env`'s value (a tool override, not a pipeline setting), else the cached build, else `name`
    on PATH."""
    override = os.environ.get(override_env)
    if override:
        if os.access(override, os.X_OK):
            return override
        raise _missing(f"{override_env}={override!r} is not an executable", override_env, kube_cache)
    if cached is not None and os.access(cached, os.X_OK):
        return str(cached)
    found = shutil.which(name)
    if found:
        return found
    where = f"{cached}, nor on PATH" if cached else "not on PATH"
    raise _missing(f"{name} not found ({where})", override_env, kube_cache)


def kube_apiserver_binary(kube_cache: Path) -> str:
    """``KUBE_APISERVER_BINARY``, else the build script's cached binary, else ``kube-apiserver`` on PATH."""
    return _binary("kube-apiserver", "KUBE_APISERVER_BINARY", kube_cache, kube_cache / KUBE_VERSION / "kube-apiserver")


def etcd_binary(kube_cache: Path) -> str:
    """``ETCD_BINARY``, else ``etcd`` on PATH (Debian's etcd-server 3.4)."""
    return _binary("etcd", "ETCD_BINARY", kube_cache)


@functools.cache
def _etcd_supports(binary: str, flag: str) -> bool:
    """Whether this etcd knows ``flag`` (``--unsafe-no-fsync`` appeared in 3.5; Debian 12 ships 3.4)."""
    result = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
    return flag in result.stdout + result.stderr


class _LoggedProcess(ServerProcess):
    """ServerProcess whose log tail also recognises klog and zap error lines."""

    error_line = _ERROR_LINE

    def _died_on_port(self) -> bool:
        died = self._proc is not None and self._proc.poll() is not None
        tail = self.log_tail(200).lower()
        self.stop()
        return died and "address already in use" in tail


class _Etcd(_LoggedProcess):
    name = "etcd"

    def __init__(self, dir: Path, binary: str) -> None:
        super().__init__()
        self.binary = binary
        self.dir = dir
        self.data_path = dir / "etcd-data"
        self.log_path = dir / "etcd.log"
        self.port = free_port()
        self.peer_port = free_port()

    def _argv(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.peer_port}"
        argv = [
            self.binary,
            "--name=default",
            f"--data-dir={self.data_path}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--initial-cluster-state=new",
            # One member: nobody to lose an election to, so short timeouts only make it ready sooner.
            "--heartbeat-interval=10",
            "--election-timeout=100",
            "--logger=zap",
            "--log-outputs=stderr",
        ]
        if _etcd_supports(self.binary, "--unsafe-no-fsync"):
            argv.append("--unsafe-no-fsync")  # test data: durability across a power cut is not needed
        return argv

    def start(self, timeout: float = 30) -> Self:
        if self.running:
            return self
        def new_ports() -> None:
            self.port, self.peer_port = free_port(), free_port()
            shutil.rmtree(self.data_path, ignore_errors=True)

        self._spawn_until_ready(time.monotonic() + timeout, "/health", on_port_lost=new_ports)
        return self


class _APIServer(_LoggedProcess):
    name = "kube-apiserver"

    def __init__(self, dir: Path, binary: str, argv: Sequence[str], ca_path: Path, token: str) -> None:
        super().__init__()
        self.binary = binary
        self.dir = dir
        self.log_path = dir / "kube-apiserver.log"
        self.port = free_port()
        self.extra_argv = list(argv)
        self.ca_path = ca_path
        self.token = token

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _argv(self) -> list[str]:
        return [self.binary, f"--secure-port={self.port}", *self.extra_argv]

    def _wait_ready(self, deadline: float, path: str = "/readyz") -> None:
        """``/readyz`` with the admin token over TLS verified against our CA; the last answer on timeout."""
        last = "no answer"
        verify = ssl.create_default_context(cafile=str(self.ca_path))
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(timeout=2.0, trust_env=False, verify=verify, headers=headers) as probe:
            while True:
                self._check_alive()
                try:
                    resp = probe.get(f"{self.url}{path}", params={"verbose": "1"})
                    if resp.status_code == 200:
                        return
                    failing = [ln for ln in resp.text.splitlines() if ln.startswith("[-]")]
                    last = f"{resp.status_code}: {' '.join(failing) or resp.text[:300]}"
                except httpx.TransportError as exc:
                    last = repr(exc)
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"kube-apiserver not ready at {self.url}{path} in time (last answer {last}; "
                        f"log {self.log_path}):\n{self.log_tail()}"
                    )
                time.sleep(0.05)


class KubeAPIServer:
    """etcd plus kube-apiserver as subprocesses on 127.0.0.1, with generated TLS and static tokens.

    ``timings`` (seconds): ``certs_s`` (openssl), ``etcd_ready_s``, ``apiserver_ready_s`` (spawn →
    ``/readyz`` 200), ``start_s`` (the whole first start), ``restart_s`` (the latest
    ``restart_apiserver()`` / ``start_apiserver()``: spawn → ``/readyz``).

    ``cache_dir`` holds the build script's binaries under ``kube/`` (None: ``Settings.cache_dir``).
    ``extra_apiserver_args`` are appended to the kube-apiserver command line (a scalar flag given twice: the last wins; e.g.
    ``--etcd-compaction-interval=10s`` or ``--feature-gates=...``). ``keep_data`` keeps etcd's data
    directory after ``stop()`` (by default it is deleted: its preallocated WAL alone is 64 MB).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        extra_apiserver_args: Sequence[str] = (),
        keep_data: bool = False,
        cache_dir: Path | None = None,
    ) -> None:
        kube_cache = kube_cache_dir(cache_dir)
        self._apiserver_binary = kube_apiserver_binary(kube_cache)
        self._etcd_binary = etcd_binary(kube_cache)
        if shutil.which("openssl") is None:
            raise ComponentMissingError("openssl not found on PATH (Debian: apt-get install openssl)")
        self.dir = new_workdir(workdir, "kube-")
        self.pki = self.dir / "pki"
        self.ca_path = self.pki / "ca.crt"
        self.token_file = self.pki / "tokens.csv"
        self.keep_data = keep_data
        self.tokens: dict[str, str] = {
            ADMIN_USER: secrets.token_urlsafe(24),
            RESTRICTED_USER: secrets.token_urlsafe(24),
        }
        self.timings: dict[str, float] = {}
        self.etcd = _Etcd(self.dir, self._etcd_binary)
        self.apiserver = _APIServer(self.dir, self._apiserver_binary, [], self.ca_path, self.admin_token)
        self._extra_args = list(extra_apiserver_args)
        self._pki_ready = False
        self._apiserver_started_once = False

    # ------------------------------------------------------------------ identity
    @property
    def url(self) -> str:
        """``https://127.0.0.1:<port>``; the port stays the same across ``restart_apiserver()``."""
        return self.apiserver.url

    @property
    def admin_token(self) -> str:
        return self.tokens[ADMIN_USER]

    @property
    def restricted_token(self) -> str:
        return self.tokens[RESTRICTED_USER]

    def token(self, user: str) -> str:
        try:
            return self.tokens[user]
        except KeyError:
            raise KeyError(f"unknown user {user!r}; known: {sorted(self.tokens)}") from None

    @property
    def running(self) -> bool:
        return self.etcd.running and self.apiserver.running

    # ------------------------------------------------------------------ certificates and tokens
    def _openssl(self, args: str) -> None:
        result = subprocess.run(
            ["openssl", *args.split()], cwd=self.pki, capture_output=True, text=True, timeout=30, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"openssl {args} failed:\n{result.stderr}{result.stdout}")

    def _write_pki(self) -> None:
        """CA, serving cert for 127.0.0.1/localhost, service-account key pair (all P-256), token file."""
        t0 = time.perf_counter()
        self.pki.mkdir(parents=True, exist_ok=True)
        (self.pki / "openssl.cnf").write_text(_OPENSSL_CONFIG)
        # Relative file names only (cwd is the pki directory), so splitting on spaces is safe.
        ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -noenc -config openssl.cnf"
        self._openssl(
            f"req -x509 {ec} -extensions ca -subj /CN=pipeline-test-kube-ca -days 3650 -keyout ca.key -out ca.crt"
        )
        self._openssl(f"req -new {ec} -subj /CN=kube-apiserver -keyout apiserver.key -out apiserver.csr")
        self._openssl(
            "x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650"
            " -extfile openssl.cnf -extensions serving -out apiserver.crt"
        )
        self._openssl("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out sa.key")
        self._openssl("pkey -in sa.key -pubout -out sa.pub")
        # token,user,uid[,"group1,group2"]; system:authenticated is added to every authenticated user.
        self.token_file.write_text(
            f'{self.admin_token},{ADMIN_USER},{ADMIN_USER}-uid,"system:masters"\n'
            f"{self.restricted_token},{RESTRICTED_USER},{RESTRICTED_USER}-uid\n"
        )
        for secret in ("ca.key", "apiserver.key", "sa.key", "tokens.csv"):
            (self.pki / secret).chmod(0o600)
        self.timings["certs_s"] = time.perf_counter() - t0
        self._pki_ready = True

    def _apiserver_args(self) -> list[str]:
        pki = self.pki
        return [
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--etcd-servers={self.etcd.url}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--cert-dir={pki}",
            "--authorization-mode=RBAC",
            f"--token-auth-file={self.token_file}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.96.0.0/24",
            # No controller-manager creates the `default` ServiceAccount: do not require it for pods.
            "--disable-admission-plugins=ServiceAccount",
            # Loopback is no address to publish in the `kubernetes` Service's Endpoints.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            "--v=1",
            *self._extra_args,
        ]

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 60) -> Self:
        """Generate the PKI (once), start etcd, then kube-apiserver, and wait for ``/readyz``."""
        if self.running:
            return self
        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout
        if not self._pki_ready:
            self._write_pki()
        t1 = time.perf_counter()
        self.etcd.start(timeout=max(1.0, deadline - time.monotonic()))
        self.timings["etcd_ready_s"] = time.perf_counter() - t1
        try:
            self.start_apiserver(timeout=max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        self.timings["apiserver_ready_s"] = self.timings["restart_s"]
        self.timings["start_s"] = time.perf_counter() - t0
        return self

    def start_apiserver(self, timeout: float = 60) -> Self:
        """Start kube-apiserver alone (etcd must be running) on its previous port, wait for ``/readyz``."""
        if self.apiserver.running:
            return self
        if not self.etcd.running:
            raise RuntimeError(f"etcd is not running (log {self.etcd.log_path}):\n{self.etcd.log_tail()}")
        self.apiserver.extra_argv = self._apiserver_args()  # etcd's port may have changed
        first = not self._apiserver_started_once
        deadline = time.monotonic() + timeout
        t0 = time.perf_counter()
        for attempt in range(5):
            if attempt and first:
                self.apiserver.port = free_port()  # lost the race for the port: take another one
            self.apiserver._spawn()
            try:
                self.apiserver._wait_ready(deadline)
            except RuntimeError:
                if self.apiserver._died_on_port() and attempt < 4:
                    if not first:
                        time.sleep(0.5)  # the port must stay the same: wait for it to be released
                    continue
                raise
            self._apiserver_started_once = True
            self.timings["restart_s"] = time.perf_counter() - t0
            return self
        raise AssertionError("unreachable")

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver only (SIGTERM; it closes watches and exits in well under a second)."""
        self.apiserver.stop()

    def restart_apiserver(self, timeout: float = 60) -> Self:
        """Stop and start kube-apiserver on the same port while etcd keeps the data. Blocking (~4 s):
        from async code call it through ``asyncio.to_thread``."""
        self.stop_apiserver()
        return self.start_apiserver(timeout)

    def stop(self) -> None:
        """Stop both (kube-apiserver first); delete etcd's data unless ``keep_data`` (a later ``start()``
        then begins with an empty cluster). Certificates, tokens and logs stay in ``dir``."""
        self.apiserver.stop()
        self.etcd.stop()
        if not self.keep_data:
            shutil.rmtree(self.etcd.data_path, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ diagnostics
    def log_tail(self, lines: int = 40) -> str:
        return (
            f"--- {self.apiserver.log_path}\n{self.apiserver.log_tail(lines)}\n"
            f"--- {self.etcd.log_path}\n{self.etcd.log_tail(lines)}"
        )

    # ------------------------------------------------------------------ clients
    def kubeconfig(self, path: Path | str, user: str = ADMIN_USER) -> Path:
        """Write a kubeconfig for ``user`` (a token, the CA by path) and return its path."""
        path = Path(path)
        config: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "pipeline-test",
                    "cluster": {"server": self.url, "certificate-authority": str(self.ca_path)},
                }
            ],
            "users": [{"name": user, "user": {"token": self.token(user)}}],
            "contexts": [{"name": user, "context": {"cluster": "pipeline-test", "user": user}}],
            "current-context": user,
            "preferences": {},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    def configuration(self, user: str = ADMIN_USER) -> Configuration:
        """A ``kubernetes_asyncio.client.Configuration`` for ``user``: bearer token, our CA, no proxy."""
        from kubernetes_asyncio.client import Configuration

        config = Configuration(
            host=self.url,
            api_key={"BearerToken": self.token(user)},
            api_key_prefix={"BearerToken": "Bearer"},
            ssl_ca_cert=str(self.ca_path),
        )
        config.verify_ssl = True
        return config

    @contextlib.asynccontextmanager
    async def api_client(self, user: str = ADMIN_USER) -> AsyncIterator[ApiClient]:
        """A ``kubernetes_asyncio`` ApiClient for ``user``, closed on exit. Use one per test (or per
        reconnect): its connection pool does not survive ``restart_apiserver()`` gracefully."""
        from kubernetes_asyncio.client import ApiClient

        async with ApiClient(self.configuration(user)) as api:
            yield api

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<KubeAPIServer {self.url} etcd={self.etcd.url} {state} dir={self.dir}>"
