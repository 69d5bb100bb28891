#!/usr/bin/env bash
# Install the real components the integration tests run against:
#   - Debian `prometheus` (2.42: prometheus, promtool)
#   - Debian `prometheus-alertmanager` (0.25: prometheus-alertmanager, amtool)
#   - Debian `nodejs` and `npm` (18; any Node >= 18 on PATH will do) for the official AsyncAPI/OpenAPI parsers
#     (scripts/api-docs, installed by scripts/setup)
# or, with the argument `image`, the tools scripts/build-image builds and runs the container image with:
#   - Debian `buildah` (1.28), `skopeo` (1.9), `mmdebstrap` (1.3), `podman` (4.3) and `runc` (1.1; podman's
#     other runtime, crun, fails on hosts with cgroups in hybrid mode, so it is not installed)
#
# Idempotent and fast when everything is present (no apt, no sudo). Works non-interactively as root on a
# fresh Debian 12 machine; as a normal user it re-runs itself through sudo.
#
# Debian packaging gotchas handled here:
#   * The Alertmanager binary is /usr/bin/prometheus-alertmanager (there is no `alertmanager`).
#   * The packages' postinst scripts try to start the daemons (`invoke-rc.d ... start || exit 1`, and
#     `deb-systemd-invoke start` when systemd runs). Started, they listen on *:9090, *:9093 and the
#     gossip port *:9094. We install a temporary /usr/sbin/policy-rc.d (exit 101 = "action forbidden")
#     when none exists, so nothing is started and a failing start cannot fail the install; afterwards we
#     stop anything that was started anyway and disable the systemd units we just enabled.
#
# Environment:
#   COMPONENTS_FORCE_APT_UPDATE=1   always run `apt-get update` before installing.
set -euo pipefail

GROUP="${1:-test}"
case "$GROUP" in
  # Debian names; `alertmanager` is accepted too in case an upstream tarball is on PATH.
  # java and mvn fetch and run the embedded Apache Kafka broker (usually preinstalled on these machines); node and
  # npm run the API document parsers.
  test) REQUIRED_BINARIES=(prometheus promtool amtool java mvn node npm) ;;
  image) REQUIRED_BINARIES=(buildah skopeo mmdebstrap podman runc) ;;
  *) printf '[install-components] unknown group %q (test or image)\n' "$GROUP" >&2; exit 2 ;;
esac

package_for() {
  case "$1" in
    prometheus|promtool) echo prometheus ;;
    amtool|alertmanager) echo prometheus-alertmanager ;;
    java) echo openjdk-17-jre-headless ;;
    mvn) echo maven ;;
    node) echo nodejs ;;
    *) echo "$1" ;;  # npm and the image tools: the package is named after its binary
  esac
}

log() { printf '[install-components] %s\n' "$*" >&2; }

have_alertmanager() {
  command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1
}

missing_binaries() {
  local b missing=()
  for b in "${REQUIRED_BINARIES[@]}"; do
    command -v "$b" >/dev/null 2>&1 || missing+=("$b")
  done
  [[ "$GROUP" != test ]] || have_alertmanager || missing+=("alertmanager")
  printf '%s\n' "${missing[@]}"
}

# ---------------------------------------------------------------------------------------------------
# Fast path: everything is already installed.
missing="$(missing_binaries)"
if [[ -z "$missing" ]]; then
  if [[ "$GROUP" == test ]]; then
    log "all components present: $(command -v prometheus-alertmanager || command -v alertmanager)," \
        "$(command -v amtool), $(command -v prometheus), $(command -v promtool)"
  fi
  exit 0
fi
log "missing binaries: $(echo $missing)"
PACKAGES=()
for b in $missing; do
  pkg="$(package_for "$b")"
  [[ " ${PACKAGES[*]} " == *" $pkg "* ]] || PACKAGES+=("$pkg")
done

# ---------------------------------------------------------------------------------------------------
# Root / sudo.
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    log "not root: re-running through sudo"
    exec sudo DEBIAN_FRONTEND=noninteractive COMPONENTS_FORCE_APT_UPDATE="${COMPONENTS_FORCE_APT_UPDATE:-}" \
      bash "$0" "$@"
  fi
  log "ERROR: installing ${PACKAGES[*]} needs root, and sudo is not available."
  log "       Run this script as root:  su -c 'bash $0'"
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  log "ERROR: apt-get not found; this script supports Debian 12 (bookworm) only."
  log "       Install ${PACKAGES[*]} by hand (test: prometheus 2.42+, alertmanager 0.25+, amtool, promtool)."
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
export NEEDRESTART_MODE=a
APT_OPTS=(-y -q --no-install-recommends
  -o DPkg::Lock::Timeout=300
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

# ---------------------------------------------------------------------------------------------------
# Keep the postinst from starting daemons.
POLICY=/usr/sbin/policy-rc.d
POLICY_MARK="# temporary policy-rc.d written by install-components.sh"
created_policy=0
cleanup() {
  if [[ "$created_policy" -eq 1 ]] && grep -qF "$POLICY_MARK" "$POLICY" 2>/dev/null; then
    rm -f "$POLICY"
  fi
}
trap cleanup EXIT
if [[ ! -e "$POLICY" ]]; then
  printf '#!/bin/sh\n%s\nexit 101\n' "$POLICY_MARK" >"$POLICY"
  chmod 0755 "$POLICY"
  created_policy=1
  log "installed temporary $POLICY (exit 101) so the postinst does not start services"
else
  log "$POLICY already exists; leaving it alone (services are stopped after the install if started)"
fi

# ---------------------------------------------------------------------------------------------------
# apt-get update only when needed: no candidate for a package, or forced.
candidates_known() {
  local p cand
  for p in "${PACKAGES[@]}"; do
    cand="$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')"
    [[ -n "$cand" && "$cand" != "(none)" ]] || return 1
  done
}
apt_update() {
  log "apt-get update"
  apt-get -q -o DPkg::Lock::Timeout=300 update >&2
}

start_ts=$(date +%s.%N)
if [[ -n "${COMPONENTS_FORCE_APT_UPDATE:-}" ]] || ! candidates_known; then
  apt_update
fi

log "apt-get install ${PACKAGES[*]}"
if ! apt-get install "${APT_OPTS[@]}" "${PACKAGES[@]}" >&2; then
  # Typical cause: stale package lists (404 on a superseded .deb). Refresh once and retry.
  log "install failed; refreshing package lists and retrying once"
  apt_update
  apt-get install "${APT_OPTS[@]}" "${PACKAGES[@]}" >&2
fi

# ---------------------------------------------------------------------------------------------------
# Make sure no packaged daemon is left running (e.g. a pre-existing permissive policy-rc.d, or systemd).
stop_packaged_daemon() {
  local name="$1" bin="$2" pidfile="/run/prometheus/$1.pid" pid
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    if systemctl is-active --quiet "$name.service" 2>/dev/null; then
      log "stopping $name.service started by the package"
      systemctl stop "$name.service" || true
    fi
  fi
  if [[ -f "$pidfile" ]]; then
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    if [[ -n "$pid" ]] && [[ "$(readlink -f "/proc/$pid/exe" 2>/dev/null)" == "$bin" ]]; then
      log "stopping $name (pid $pid) started by the package's postinst"
      if [[ -x "/etc/init.d/$name" ]]; then
        "/etc/init.d/$name" stop >&2 || kill "$pid" 2>/dev/null || true
      else
        kill "$pid" 2>/dev/null || true
      fi
    fi
  fi
}
disable_packaged_unit() {
  # The postinst enables the units (policy-rc.d does not govern that); tests start their own instances.
  local name="$1"
  if command -v deb-systemd-helper >/dev/null 2>&1; then
    deb-systemd-helper disable "$name.service" >/dev/null 2>&1 || true
  fi
  if command -v update-rc.d >/dev/null 2>&1 && [[ -x "/etc/init.d/$name" ]]; then
    update-rc.d "$name" disable >/dev/null 2>&1 || true
  fi
}
if [[ "$GROUP" == test ]]; then
  stop_packaged_daemon prometheus /usr/bin/prometheus
  stop_packaged_daemon prometheus-alertmanager /usr/bin/prometheus-alertmanager
  disable_packaged_unit prometheus
  disable_packaged_unit prometheus-alertmanager
fi

end_ts=$(date +%s.%N)

missing="$(missing_binaries)"
if [[ -n "$missing" ]]; then
  log "ERROR: still missing after install: $(echo $missing)"
  exit 1
fi
if [[ "$GROUP" == image ]]; then
  log "installed in $(awk -v a="$start_ts" -v b="$end_ts" 'BEGIN {printf "%.1f", b - a}') s: ${PACKAGES[*]}"
  exit 0
fi
log "installed in $(awk -v a="$start_ts" -v b="$end_ts" 'BEGIN {printf "%.1f", b - a}') s:" \
    "$(prometheus-alertmanager --version 2>&1 | head -n1)"
log "                 $(prometheus --version 2>&1 | head -n1)"
