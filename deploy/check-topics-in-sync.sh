#!/usr/bin/env bash
# The chart renders its own copies of the topic specs and of the remediation rules (Helm reads only files
# inside the chart): deploy/helm/pipeline/files/topics/*.yaml must equal topics/*.yaml, and
# deploy/helm/pipeline/files/rules/*.yaml must equal rules/*.yaml, and files/grafana/pipeline.json
# deploy/grafana/pipeline.json. Exits 1 on any difference, with the fix.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
chart_files="deploy/helm/pipeline/files"
status=0

# check_copy DIR: every *.yaml of DIR/ and of the chart's files/DIR/ exists in both and is identical.
check_copy() {
  local dir="$1" drift=0 name names
  names="$( (cd "$root/$dir" && ls -1 -- *.yaml; cd "$root/$chart_files/$dir" && ls -1 -- *.yaml) 2>/dev/null | sort -u)"
  for name in $names; do
    if [[ ! -f "$root/$chart_files/$dir/$name" ]]; then
      echo "missing in the chart: $chart_files/$dir/$name"
      drift=1
    elif [[ ! -f "$root/$dir/$name" ]]; then
      echo "only in the chart (removed from $dir/?): $chart_files/$dir/$name"
      drift=1
    elif ! diff -u --label "$dir/$name" --label "$chart_files/$dir/$name" \
        "$root/$dir/$name" "$root/$chart_files/$dir/$name"; then
      drift=1
    fi
  done
  if [[ $drift -ne 0 ]]; then
    echo
    echo "The chart's copy of $dir/ differs. Refresh it:"
    echo "  rm -f $chart_files/$dir/*.yaml && cp $dir/*.yaml $chart_files/$dir/"
    status=1
  else
    echo "$dir in sync: $(echo "$names" | wc -w) file(s)"
  fi
}

check_copy topics
check_copy rules
# The Grafana dashboard (one file, not under the repository's root).
dashboard="deploy/grafana/pipeline.json"
if ! diff -u --label "$dashboard" --label "$chart_files/grafana/pipeline.json" \
    "$root/$dashboard" "$root/$chart_files/grafana/pipeline.json"; then
  echo
  echo "The chart's copy of the Grafana dashboard differs. Refresh it:"
  echo "  cp $dashboard $chart_files/grafana/pipeline.json"
  status=1
else
  echo "grafana dashboard in sync"
fi
exit $status
