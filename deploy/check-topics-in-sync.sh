#!/usr/bin/env bash
# The chart renders its own copy of the topic specs (Helm reads only files inside the chart):
# deploy/helm/pipeline/files/topics/ must equal topics/. Exits 1 on any difference, with the fix.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
source_dir="$root/topics"
copy_dir="$root/deploy/helm/pipeline/files/topics"

drift=0
names="$( (cd "$source_dir" && ls -1 -- *.yaml; cd "$copy_dir" && ls -1 -- *.yaml) 2>/dev/null | sort -u)"
for name in $names; do
  if [[ ! -f "$copy_dir/$name" ]]; then
    echo "missing in the chart: $name"
    drift=1
  elif [[ ! -f "$source_dir/$name" ]]; then
    echo "only in the chart (removed from topics/?): $name"
    drift=1
  elif ! diff -u --label "topics/$name" --label "deploy/helm/pipeline/files/topics/$name" \
      "$source_dir/$name" "$copy_dir/$name"; then
    drift=1
  fi
done

if [[ $drift -ne 0 ]]; then
  echo
  echo "The chart's topic specs differ from topics/. Refresh the copy:"
  echo "  rm -f deploy/helm/pipeline/files/topics/*.yaml && cp topics/*.yaml deploy/helm/pipeline/files/topics/"
  exit 1
fi
echo "topic specs in sync: $(echo "$names" | wc -w) file(s)"
