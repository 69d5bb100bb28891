#!/usr/bin/env bash
# Provide the real Kubernetes components the integration tests (pipeline/embedded/kube.py, kube_cluster.py) start:
#   - kube-apiserver, kube-controller-manager and kube-scheduler v1.31.3, built from the Go module proxy
#     with the recipe in deploy/kube-apiserver (go.mod pins k8s.io/kubernetes and replaces its staging
#     modules; tools.go names the three commands), cached in
#     ${PIPELINE_CACHE_DIR:-~/.cache/pipeline}/kube/v1.31.3/;
#   - kwok v0.8.0 (sigs.k8s.io/kwok, `go install ...@v0.8.0`), cached in .../kube/kwok-v0.8.0/kwok: it
#     plays the kubelet for a fake node in KubeCluster;
#   - ArgoCD's Application CRD, extracted from the argo-cd/v2 v2.14.21 module zip (`go mod download`,
#     38 MB) into .../kube/argocd-v2.14.21/application-crd.yaml (sha256 pinned below);
#   - etcd from Debian's `etcd-server` (3.4.23), installed with apt when `etcd` is not on PATH.
#
# Idempotent and fast (a few ms) when all are present: no go, no apt, no sudo; each missing piece is built
# alone. A cold kube-apiserver build takes 5-7 min on 2 cores and downloads ~1 GB of modules;
# kube-controller-manager ~1.5-3.5 min more, kube-scheduler ~5 s after it, kwok ~1.5 min; with warm Go
# caches ~20 s each. Reproducible: the same binaries whatever the state of the caches. Builds run niced.
#
# Needs Go >= 1.22 on PATH (`go`, or /usr/local/go/bin/go); kwok v0.8.0 needs Go 1.26, which `go`
# fetches itself (GOTOOLCHAIN=auto) when older. Without any Go, a toolchain is fetched from
# the Go module proxy (golang.org/toolchain, the module `go` itself uses for GOTOOLCHAIN downloads) into
# the cache. The apt part runs as root, or through sudo.
#
# Environment:
#   PIPELINE_CACHE_DIR         cache root (default ~/.cache/pipeline), as for the Kafka jars.
#   KUBE_APISERVER_FORCE_BUILD=1   rebuild everything even when cached.
set -euo pipefail

KUBE_VERSION=v1.31.3
KUBE_COMMIT=c83cbee114ddb732cdc06d3d1b62c9eb9220726f # tag v1.31.3 (the module proxy's .info Origin)
KUBE_BUILD_DATE=2024-11-19T13:48:19Z                  # the tag's time, so the binary is reproducible
FALLBACK_GO=go1.23.12                                 # only when no usable Go is installed

log() { printf '[build-kube-apiserver] %s\n' "$*" >&2; }

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RECIPE="$ROOT/deploy/kube-apiserver"
CACHE_ROOT="${PIPELINE_CACHE_DIR:-$HOME/.cache/pipeline}"
BIN_DIR="$CACHE_ROOT/kube/$KUBE_VERSION"
KUBE_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler)

KWOK_VERSION=v0.8.0
KWOK_BIN="$CACHE_ROOT/kube/kwok-$KWOK_VERSION/kwok"

# helm, for the chart tests (`helm template`): built from the Go module proxy with the release binaries' version
# stamps (deploy/check-chart.sh says the same), cold ~2-4 min.
HELM_VERSION=v3.16.4
HELM_BIN="$CACHE_ROOT/helm-$HELM_VERSION/helm"

ARGOCD_MODULE=github.com/argoproj/argo-cd/v2
ARGOCD_VERSION=v2.14.21
ARGOCD_CRD="$CACHE_ROOT/kube/argocd-$ARGOCD_VERSION/application-crd.yaml"
ARGOCD_CRD_SHA256=4e7079cab5df789e2dfbdc724ed6514875acb8d5c58445272229a7e1b9c0e139

# ---------------------------------------------------------------------------------------------------
# etcd (Debian etcd-server). `--install-etcd` is the root-only part, re-entered through sudo if needed.
POLICY=/usr/sbin/policy-rc.d
POLICY_MARK="# temporary policy-rc.d written by build-kube-apiserver.sh"
remove_policy() {
  if grep -qF "$POLICY_MARK" "$POLICY" 2>/dev/null; then
    rm -f "$POLICY"
  fi
}
install_etcd_as_root() {
  export DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a
  local apt_opts=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=300
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  # The postinst starts the packaged daemon (etcd on localhost:2379/2380) unless policy-rc.d forbids it,
  # exactly as for Prometheus in install-components.sh: forbid it while we install.
  if [[ ! -e "$POLICY" ]]; then
    printf '#!/bin/sh\n%s\nexit 101\n' "$POLICY_MARK" >"$POLICY"
    chmod 0755 "$POLICY"
    trap remove_policy EXIT
    log "installed temporary $POLICY (exit 101) so the postinst does not start etcd"
  fi
  local cand
  cand="$(apt-cache policy etcd-server 2>/dev/null | awk '/Candidate:/ {print $2}')"
  if [[ -z "$cand" || "$cand" == "(none)" ]]; then
    log "apt-get update"
    apt-get -q -o DPkg::Lock::Timeout=300 update >&2
  fi
  log "apt-get install etcd-server"
  if ! apt-get install "${apt_opts[@]}" etcd-server >&2; then
    log "install failed; refreshing package lists and retrying once"
    apt-get -q -o DPkg::Lock::Timeout=300 update >&2
    apt-get install "${apt_opts[@]}" etcd-server >&2
  fi
  # Whatever a pre-existing permissive policy or systemd did: the tests start their own etcd.
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    systemctl stop etcd.service >/dev/null 2>&1 || true
    systemctl disable etcd.service >/dev/null 2>&1 || true
  elif [[ -x /etc/init.d/etcd ]]; then
    /etc/init.d/etcd stop >/dev/null 2>&1 || true
    update-rc.d etcd disable >/dev/null 2>&1 || true
  fi
}

if [[ "${1:-}" == "--install-etcd" ]]; then
  install_etcd_as_root
  exit 0
fi

ensure_etcd() {
  if command -v etcd >/dev/null 2>&1; then
    return 0
  fi
  log "etcd not found: installing Debian's etcd-server"
  if ! command -v apt-get >/dev/null 2>&1; then
    log "ERROR: apt-get not found; install etcd 3.4+ by hand (the tests look for \`etcd\` on PATH)"
    exit 1
  fi
  if [[ "$(id -u)" -eq 0 ]]; then
    install_etcd_as_root
  elif command -v sudo >/dev/null 2>&1; then
    sudo bash "$0" --install-etcd
  else
    log "ERROR: installing etcd-server needs root, and sudo is not available. Run as root:"
    log "       su -c 'bash $0 --install-etcd'"
    exit 1
  fi
  command -v etcd >/dev/null 2>&1 || { log "ERROR: etcd still missing after the install"; exit 1; }
  log "installed $(etcd --version 2>/dev/null | head -n1)"
}

# ---------------------------------------------------------------------------------------------------
# Go: the one on PATH (>= 1.22), else /usr/local/go, else a toolchain from the module proxy.
go_ok() { # $1 = go binary; true when it is Go >= 1.22
  local v
  v="$("$1" env GOVERSION 2>/dev/null)" || return 1
  [[ "$v" =~ ^go1\.([0-9]+) ]] && ((BASH_REMATCH[1] >= 22))
}

find_go() {
  local candidate
  for candidate in "$(command -v go || true)" /usr/local/go/bin/go "$CACHE_ROOT/go/$FALLBACK_GO/bin/go"; do
    if [[ -n "$candidate" && -x "$candidate" ]] && go_ok "$candidate"; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

fetch_go() { # the same zip `GOTOOLCHAIN=goX.Y.Z` would download, into $CACHE_ROOT/go/$FALLBACK_GO
  local arch dest tmp
  case "$(uname -m)" in
    x86_64) arch=amd64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) log "ERROR: no Go toolchain for $(uname -m); install Go >= 1.22"; exit 1 ;;
  esac
  dest="$CACHE_ROOT/go/$FALLBACK_GO"
  tmp="$(mktemp -d "$CACHE_ROOT/go/.fetch.XXXXXX")"
  local url="https://proxy.golang.org/golang.org/toolchain/@v/v0.0.1-$FALLBACK_GO.linux-$arch.zip"
  log "no Go >= 1.22 found: fetching $url"
  curl -fsSL --retry 3 -o "$tmp/go.zip" "$url"
  (cd "$tmp" && unzip -q go.zip)
  # A module zip: every entry under golang.org/toolchain@<version>/; zips carry no exec bits.
  local top="$tmp/golang.org/toolchain@v0.0.1-$FALLBACK_GO.linux-$arch"
  [[ -x "$top/bin/go" || -f "$top/bin/go" ]] || { log "ERROR: unexpected toolchain zip layout"; exit 1; }
  chmod +x "$top"/bin/* "$top"/pkg/tool/*/*
  rm -rf "$dest"
  mv "$top" "$dest"
  rm -rf "$tmp"
}

GO_BIN=""
ensure_go() {
  [[ -n "$GO_BIN" ]] && return 0
  if ! GO_BIN="$(find_go)"; then
    mkdir -p "$CACHE_ROOT/go"
    fetch_go
    GO_BIN="$(find_go)" || { log "ERROR: the fetched Go toolchain does not run"; exit 1; }
  fi
}

build_kube_command() { # $1 = kube-apiserver | kube-controller-manager | kube-scheduler
  local cmd="$1" out="$BIN_DIR/$1"
  ensure_go
  mkdir -p "$BIN_DIR"
  local tmp="$out.tmp.$$"
  local ldflags="-s -w"
  ldflags+=" -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=31"
  ldflags+=" -X k8s.io/component-base/version.gitCommit=$KUBE_COMMIT"
  ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
  ldflags+=" -X k8s.io/component-base/version.buildDate=$KUBE_BUILD_DATE"
  log "building $cmd $KUBE_VERSION with $("$GO_BIN" env GOVERSION) (module proxy: $("$GO_BIN" env GOPROXY))"
  if [[ "$cmd" == kube-apiserver ]]; then
    log "  cold: 5-7 min on 2 cores and ~1 GB in the module cache; with warm Go caches: ~20 s"
  fi
  local start end
  start=$(date +%s)
  # -mod=readonly: go.mod/go.sum in the repo are complete and are never rewritten by a build.
  # GOFLAGS replaces the user's (e.g. -mod=vendor would break this module); -buildvcs=false because the
  # recipe lives inside this git checkout and its state must not change the binary.
  (cd "$RECIPE" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" GOWORK=off \
    nice -n 10 "$GO_BIN" build -ldflags="$ldflags" -o "$tmp" "k8s.io/kubernetes/cmd/$cmd") >&2 || {
    rm -f "$tmp"
    log "ERROR: go build failed (above)"
    exit 1
  }
  "$tmp" --version >/dev/null || { rm -f "$tmp"; log "ERROR: the built binary does not run"; exit 1; }
  mv -f "$tmp" "$out"
  end=$(date +%s)
  log "built $out ($("$out" --version), $(du -m "$out" | cut -f1) MB) in $((end - start)) s"
}

# go_install OUT PACKAGE@VERSION LDFLAGS GOFLAGS VERSION_ARGS...: `go install` one command into a temporary
# directory next to OUT, check that it runs (`OUT VERSION_ARGS`), then move it into place.
go_install() {
  local out="$1" pkg="$2" ldflags="$3" goflags="$4"
  shift 4
  local name dir tmp start end
  name="$(basename "$out")"
  ensure_go
  dir="$(dirname "$out")"
  mkdir -p "$dir"
  tmp="$(mktemp -d "$dir/.build.XXXXXX")"
  log "building $name (go install $pkg)"
  start=$(date +%s)
  # Outside any module (cwd = the empty tmp dir), so neither this repo nor a go.work is involved.
  # GOTOOLCHAIN=auto: a module whose go.mod needs a newer go (kwok v0.8.0: 1.26.0) fetches that toolchain.
  (cd "$tmp" && GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS="$goflags" GOWORK=off GOTOOLCHAIN=auto \
    nice -n 10 "$GO_BIN" install -ldflags="$ldflags" "$pkg") >&2 || {
    rm -rf "$tmp"
    log "ERROR: go install $pkg failed (above)"
    exit 1
  }
  "$tmp/$name" "$@" >/dev/null 2>&1 || { rm -rf "$tmp"; log "ERROR: the built $name does not run"; exit 1; }
  mv -f "$tmp/$name" "$out"
  rm -rf "$tmp"
  end=$(date +%s)
  log "built $out ($("$out" "$@" 2>&1 | head -n1)) in $((end - start)) s"
}

build_kwok() { # cold ~1.5 min
  go_install "$KWOK_BIN" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "-s -w" "-buildvcs=false" --version
}

build_helm() { # cold ~0.5-4 min; the release binaries' version stamps (deploy/check-chart.sh says the same)
  local p=helm.sh/helm/v3
  go_install "$HELM_BIN" "$p/cmd/helm@$HELM_VERSION" "-s -w -X $p/internal/version.version=$HELM_VERSION \
    -X $p/pkg/chartutil.k8sVersionMajor=1 -X $p/pkg/chartutil.k8sVersionMinor=31 \
    -X $p/pkg/lint/rules.k8sVersionMajor=1 -X $p/pkg/lint/rules.k8sVersionMinor=31" \
    "-buildvcs=false -mod=mod" version --short
}

extract_argocd_crd() {
  ensure_go
  local dir tmp mod_dir sum
  dir="$(dirname "$ARGOCD_CRD")"
  mkdir -p "$dir"
  tmp="$(mktemp -d "$dir/.fetch.XXXXXX")"
  log "fetching $ARGOCD_MODULE@$ARGOCD_VERSION from the module proxy (38 MB zip) for its Application CRD"
  # `go mod download` checks the zip against go.sum's source, the checksum database, like any module.
  mod_dir="$(cd "$tmp" && GOFLAGS="" GOWORK=off "$GO_BIN" mod download -json "$ARGOCD_MODULE@$ARGOCD_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')" || {
    rm -rf "$tmp"
    log "ERROR: go mod download $ARGOCD_MODULE@$ARGOCD_VERSION failed (above)"
    exit 1
  }
  cp "$mod_dir/manifests/crds/application-crd.yaml" "$tmp/application-crd.yaml"
  chmod 0644 "$tmp/application-crd.yaml"
  sum="$(sha256sum "$tmp/application-crd.yaml" | cut -d' ' -f1)"
  if [[ "$sum" != "$ARGOCD_CRD_SHA256" ]]; then
    rm -rf "$tmp"
    log "ERROR: $mod_dir/manifests/crds/application-crd.yaml has sha256 $sum, expected $ARGOCD_CRD_SHA256"
    exit 1
  fi
  mv -f "$tmp/application-crd.yaml" "$ARGOCD_CRD"
  rm -rf "$tmp"
  log "extracted $ARGOCD_CRD"
}

missing() { # prints what is not cached yet (everything with KUBE_APISERVER_FORCE_BUILD)
  local cmd force="${KUBE_APISERVER_FORCE_BUILD:-}"
  for cmd in "${KUBE_COMMANDS[@]}"; do
    [[ -x "$BIN_DIR/$cmd" && -z "$force" ]] || echo "$cmd"
  done
  [[ -x "$KWOK_BIN" && -z "$force" ]] || echo kwok
  [[ -f "$ARGOCD_CRD" && -z "$force" ]] || echo argocd-crd
  [[ -x "$HELM_BIN" && -z "$force" ]] || echo helm
  return 0
}

# ---------------------------------------------------------------------------------------------------
ensure_etcd
todo="$(missing)"
if [[ -z "$todo" ]]; then
  log "present: ${KUBE_COMMANDS[*]} in $BIN_DIR, $KWOK_BIN, $ARGOCD_CRD, $HELM_BIN, $(command -v etcd)"
  exit 0
fi
mkdir -p "$BIN_DIR"
exec 9>"$BIN_DIR/.build.lock"
if ! flock -n 9; then
  log "another build is running; waiting for it"
  flock 9
  todo="$(missing)"
  if [[ -z "$todo" ]]; then
    log "present: everything (built by the other run)"
    exit 0
  fi
fi
for item in $todo; do
  case "$item" in
    kwok) build_kwok ;;
    helm) build_helm ;;
    argocd-crd) extract_argocd_crd ;;
    *) build_kube_command "$item" ;;
  esac
done
