"""A small Kubernetes cluster with controllers for tests and benchmarks: the project's KubeAPIServer plus
kube-controller-manager, kube-scheduler and kwok (pods Running and Ready without containers), with the ArgoCD
Application CRD, a sample operator CRD and an optional audit log. Binaries come from
scripts/build-kube-apiserver.sh (cached in <Settings.cache_dir>/kube, ~/.cache/pipeline/kube by default)."""

from __future__ import annotations

import contextlib
import json
import ssl
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, Self

import httpx
import yaml

from pipeline.embedded.kube import (
    BUILD_SCRIPT,
    KUBE_VERSION,
    KubeAPIServer,
    _binary,
    _LoggedProcess,
    kube_cache_dir,
)
from pipeline.embedded.process import ComponentMissingError, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
KWOK_VERSION = "v0.8.0"
ARGOCD_VERSION = "v2.14.21"
KWOK_CONFIG = REPO_ROOT / "deploy" / "test-cluster" / "kwok.yaml"
TEST_CRDS_DIR = REPO_ROOT / "deploy" / "test-crds"
MEMCACHED_CRD = TEST_CRDS_DIR / "memcached.cache.example.com.yaml"
KWOK_NODE = "kwok-node-0"
_CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
MUTATING_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})

_AUDIT_POLICY = """\
# Every request at Metadata level (who, verb, objectRef, response code; no bodies), once per request.
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
  - level: Metadata
"""


def kube_controller_manager_binary(kube_cache: Path) -> str:
    return _binary(
        "kube-controller-manager",
        "KUBE_CONTROLLER_MANAGER_BINARY",
        kube_cache,
        kube_cache / KUBE_VERSION / "kube-controller-manager",
    )


def kube_scheduler_binary(kube_cache: Path) -> str:
    return _binary("kube-scheduler", "KUBE_SCHEDULER_BINARY", kube_cache, kube_cache / KUBE_VERSION / "kube-scheduler")


def kwok_binary(kube_cache: Path) -> str:
    return _binary("kwok", "KWOK_BINARY", kube_cache, kube_cache / f"kwok-{KWOK_VERSION}" / "kwok")


def argocd_application_crd(kube_cache: Path) -> Path:
    """The ArgoCD ``Application`` CRD extracted by the build script from the argo-cd/v2 module zip."""
    path = kube_cache / f"argocd-{ARGOCD_VERSION}" / "application-crd.yaml"
    if not path.is_file():
        raise ComponentMissingError(
            f"the ArgoCD Application CRD is missing ({path}). Extract it with:\n    bash {BUILD_SCRIPT}\n"
            f"(`go mod download github.com/argoproj/argo-cd/v2@{ARGOCD_VERSION}`, a 38 MB zip)."
        )
    return path


class _Controller(_LoggedProcess):
    """kube-controller-manager, kube-scheduler or kwok: argv from a callable, a health endpoint."""

    def __init__(
        self, name: str, dir: Path, binary: str, argv: Callable[[int], list[str]], *, health: str, tls: bool
    ) -> None:
        super().__init__()
        self.name = name
        self.binary = binary
        self.dir = dir
        self.log_path = dir / f"{name}.log"
        self.port = free_port()
        self._make_argv = argv
        self.health = health
        self.tls = tls

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _argv(self) -> list[str]:
        return [self.binary, *self._make_argv(self.port)]

    def _wait_ready(self, deadline: float, path: str = "/healthz") -> None:
        # kcm and the scheduler serve a self-signed certificate of their own (in --cert-dir).
        last = "no answer"
        with httpx.Client(timeout=2.0, trust_env=False, verify=False) as probe:
            while True:
                self._check_alive()
                try:
                    resp = probe.get(f"{self.url}{path}")
                    if resp.status_code == 200:
                        return
                    last = f"{resp.status_code}: {resp.text[:300]}"
                except httpx.TransportError as exc:
                    last = repr(exc)
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.name} not ready at {self.url}{path} in time (last answer {last}; "
                        f"log {self.log_path}):\n{self.log_tail()}"
                    )
                time.sleep(0.05)

    def start(self, timeout: float = 60) -> Self:
        if self.running:
            return self

        def new_port() -> None:
            self.port = free_port()

        self._spawn_until_ready(time.monotonic() + timeout, self.health, on_port_lost=new_port)
        return self


def _node_manifest(name: str) -> dict[str, Any]:
    """A fake Node that kwok manages (annotation ``kwok.x-k8s.io/node=fake``), with room for many pods."""
    resources = {"cpu": "32", "memory": "256Gi", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
                "kubernetes.io/role": "agent",
                "node-role.kubernetes.io/agent": "",
                "type": "kwok",
            },
        },
        "spec": {},
        "status": {"allocatable": dict(resources), "capacity": dict(resources)},
    }


class KubeCluster(KubeAPIServer):
    """A KubeAPIServer plus kube-controller-manager, kube-scheduler and kwok: a small cluster whose
    Deployments roll out to Running, Ready pods without containers, kubelet or root.

    * One fake node, ``kwok-node-0`` (kwok keeps it Ready and plays the kubelet for pods bound to it);
      the scheduler binds pods to it. A pod labelled ``crashloop=true`` goes to CrashLoopBackOff
      (Ready=False, restartCount going up every ~5 s) instead of Ready: kwok's custom ``pod-crashloop``
      stage in ``deploy/test-cluster/kwok.yaml``. A ``pods/status`` patch (the kubelet's part, as the
      KubeAPIServer tests do it) is left alone by kwok.
    * The real controllers: Deployments/ReplicaSets, garbage collector, namespace deletion, Jobs,
      endpoints, ServiceAccounts (each new namespace gets ``default``) ...
    * CRDs installed and Established: ArgoCD's ``applications.argoproj.io`` (v2.14.21, from the build
      script's cache) and the sample ``memcacheds.cache.example.com`` (``deploy/test-crds``).
    * ``--shutdown-watch-termination-grace-period=2s``: ``restart_apiserver()`` takes ~3.5 s even with
      the controllers' watches open (without it kube-apiserver does not exit on SIGTERM).
    * ``audit_log=True``: every request is written once (stage ResponseComplete, level Metadata) to
      ``<dir>/audit.log`` as JSON lines; read it with :meth:`audit_events` / :meth:`mutations`.

    ``timings`` adds ``kube-controller-manager_ready_s``, ``kube-scheduler_ready_s``, ``kwok_ready_s``,
    ``node_ready_s``, ``crds_established_s``, ``controllers_acting_s`` and ``cluster_start_s``.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        audit_log: bool = False,
        extra_apiserver_args: Sequence[str] = (),
        extra_crds: Sequence[Path] = (),
        keep_data: bool = False,
        cache_dir: Path | None = None,
    ) -> None:
        kube_cache = kube_cache_dir(cache_dir)
        binaries = {
            "kube-controller-manager": kube_controller_manager_binary(kube_cache),
            "kube-scheduler": kube_scheduler_binary(kube_cache),
            "kwok": kwok_binary(kube_cache),
        }
        self.crd_files = [argocd_application_crd(kube_cache), MEMCACHED_CRD, *map(Path, extra_crds)]
        args = ["--shutdown-watch-termination-grace-period=2s"]
        self.audit_log = audit_log
        super().__init__(
            workdir, extra_apiserver_args=[*args, *extra_apiserver_args], keep_data=keep_data, cache_dir=cache_dir
        )
        self.audit_log_path = self.dir / "audit.log"
        self.admin_kubeconfig = self.dir / "admin.kubeconfig"
        pki = self.pki
        common = [
            f"--kubeconfig={self.admin_kubeconfig}",
            f"--authentication-kubeconfig={self.admin_kubeconfig}",
            f"--authorization-kubeconfig={self.admin_kubeconfig}",
            # The API server has no client CA, so kube-system/extension-apiserver-authentication never exists.
            "--authentication-skip-lookup=true",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
            "--v=1",
        ]
        kcm_args = [
            *common,
            f"--cert-dir={self.dir / 'kcm-certs'}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={self.ca_path}",
            "--use-service-account-credentials=true",
            f"--cluster-signing-cert-file={self.ca_path}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--controllers=*",
        ]
        scheduler_args = [*common, f"--cert-dir={self.dir / 'scheduler-certs'}"]
        kwok_args = [
            f"--kubeconfig={self.admin_kubeconfig}",
            f"--config={KWOK_CONFIG}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-lease-duration-seconds=40",
        ]
        self.controller_manager = _Controller(
            "kube-controller-manager",
            self.dir,
            binaries["kube-controller-manager"],
            lambda port: [*kcm_args, f"--secure-port={port}"],
            health="/healthz",
            tls=True,
        )
        self.scheduler = _Controller(
            "kube-scheduler",
            self.dir,
            binaries["kube-scheduler"],
            lambda port: [*scheduler_args, f"--secure-port={port}"],
            health="/readyz",
            tls=True,
        )
        self.kwok = _Controller(
            "kwok",
            self.dir,
            binaries["kwok"],
            lambda port: [*kwok_args, f"--server-address=127.0.0.1:{port}"],
            health="/healthz",
            tls=False,
        )

    @property
    def controllers(self) -> tuple[_Controller, ...]:
        """In start order (stopped in reverse)."""
        return (self.controller_manager, self.scheduler, self.kwok)

    @property
    def running(self) -> bool:
        return super().running and all(c.running for c in self.controllers)

    def _apiserver_args(self) -> list[str]:
        args = super()._apiserver_args()
        if not self.audit_log:
            return args
        policy = self.dir / "audit-policy.yaml"
        policy.write_text(_AUDIT_POLICY)
        audit = [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log_path}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",
        ]
        cut = len(args) - len(self._extra_args)  # before the extra args, so a caller's own flags still win
        return [*args[:cut], *audit, *args[cut:]]

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 90) -> Self:
        """etcd, kube-apiserver, then kcm, the scheduler and kwok (each waited for); then the fake node,
        the CRDs (Established) and the first sign of the controllers acting (``default/default`` SA)."""
        if self.running:
            return self
        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout
        super().start(timeout=timeout)
        try:
            self.kubeconfig(self.admin_kubeconfig)
            for controller in self.controllers:
                t1 = time.perf_counter()
                controller.start(timeout=max(1.0, deadline - time.monotonic()))
                self.timings[f"{controller.name}_ready_s"] = time.perf_counter() - t1
            with self._http() as http:
                self._setup_cluster(http, deadline)
        except BaseException:
            self.stop()
            raise
        self.timings["cluster_start_s"] = time.perf_counter() - t0
        return self

    def _http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            timeout=10.0,
            trust_env=False,
            verify=ssl.create_default_context(cafile=str(self.ca_path)),
            headers={"Authorization": f"Bearer {self.admin_token}"},
        )

    def _until(self, deadline: float, what: str, check: Callable[[], bool]) -> float:
        """Poll `check` until true; the seconds it took. On timeout: a RuntimeError with the logs."""
        t0 = time.perf_counter()
        while not check():
            for controller in self.controllers:
                controller._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"test cluster: {what} did not happen in time\n{self.log_tail()}")
            time.sleep(0.05)
        return time.perf_counter() - t0

    def _setup_cluster(self, http: httpx.Client, deadline: float) -> None:
        _ok(http.post("/api/v1/nodes", json=_node_manifest(KWOK_NODE)), "create node", {409})

        def node_ready() -> bool:
            node = _ok(http.get(f"/api/v1/nodes/{KWOK_NODE}"), "get node")
            conditions = node.get("status", {}).get("conditions") or []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        crds = [doc for path in self.crd_files for doc in yaml.safe_load_all(path.read_text()) if doc]
        for crd in crds:
            _ok(http.post(_CRDS, json=crd), f"create CRD {crd['metadata']['name']}", {409})
        names = [crd["metadata"]["name"] for crd in crds]

        def established() -> bool:
            for name in names:
                crd = _ok(http.get(f"{_CRDS}/{name}"), f"get CRD {name}")
                conditions = crd.get("status", {}).get("conditions") or []
                if not any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                    return False
            return True

        def default_sa() -> bool:
            return http.get("/api/v1/namespaces/default/serviceaccounts/default").status_code == 200

        self.timings["node_ready_s"] = self._until(deadline, f"node {KWOK_NODE} Ready", node_ready)
        self.timings["crds_established_s"] = self._until(deadline, "CRDs Established", established)
        self.timings["controllers_acting_s"] = self._until(
            deadline, "the ServiceAccount default/default (kube-controller-manager)", default_sa
        )

    def stop_controllers(self) -> None:
        for controller in reversed(self.controllers):
            controller.stop()

    def stop(self) -> None:
        """The controllers first (kwok, scheduler, kcm), then kube-apiserver and etcd."""
        self.stop_controllers()
        super().stop()

    # ------------------------------------------------------------------ audit log
    def audit_events(self) -> list[dict[str, Any]]:
        """The audit log's entries (``audit.k8s.io/v1`` Event dicts), oldest first: one per request
        (stage ``ResponseComplete``), with ``verb``, ``user.username``, ``objectRef`` (resource,
        namespace, name, subresource, apiGroup), ``responseStatus.code``. Needs ``audit_log=True``."""
        if not self.audit_log:
            raise RuntimeError("KubeCluster(audit_log=True) writes the audit log")
        try:
            text = self.audit_log_path.read_text()
        except FileNotFoundError:
            return []
        events = []
        for line in text.splitlines():
            with contextlib.suppress(ValueError):  # a line being written right now
                events.append(json.loads(line))
        return events

    def mutations(
        self,
        resource: str,
        name: str | None = None,
        *,
        namespace: str | None = None,
        subresource: str | None = "",
        user: str | None = None,
        verbs: frozenset[str] = MUTATING_VERBS,
    ) -> list[dict[str, Any]]:
        """Audit events of mutating calls (create/update/patch/delete) on `resource` (plural, e.g.
        ``deployments``), optionally for one object `name` in `namespace`, made by `user` (a username
        such as ``admin`` or ``system:serviceaccount:kube-system:deployment-controller``).
        ``subresource=""`` (default) counts the object itself only, ``"status"`` its status, ``None`` both."""
        out = []
        for event in self.audit_events():
            ref = event.get("objectRef") or {}
            if event.get("verb") not in verbs or ref.get("resource") != resource:
                continue
            if name is not None and ref.get("name") != name:
                continue
            if namespace is not None and ref.get("namespace") != namespace:
                continue
            if subresource is not None and (ref.get("subresource") or "") != subresource:
                continue
            if user is not None and event.get("user", {}).get("username") != user:
                continue
            out.append(event)
        return out

    # ------------------------------------------------------------------ diagnostics
    def log_tail(self, lines: int = 40) -> str:
        parts = [f"--- {c.log_path}\n{c.log_tail(lines)}" for c in self.controllers if c._proc is not None]
        return "\n".join([*parts, super().log_tail(lines)])

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<KubeCluster {self.url} etcd={self.etcd.url} {state} dir={self.dir}>"


def _ok(resp: httpx.Response, what: str, tolerate: Collection[int] = ()) -> dict[str, Any]:
    """The JSON body of a 2xx answer ({} for a tolerated status such as 409 AlreadyExists); else raise."""
    if resp.status_code in tolerate:
        return {}
    if resp.status_code >= 300:
        raise RuntimeError(f"test cluster: {what}: {resp.status_code} {resp.text[:500]}")
    body: dict[str, Any] = resp.json()
    return body
