#!/usr/bin/env bash
# The chart renders its own copies of the topic specs and of the remediation rules (Helm reads only files
# inside the chart): deploy/helm/pipeline/files/topics/ must equal topics/, and
# deploy/helm/pipeline/files/rules/remediation.yaml must equal rules/remediation.yaml. Exits 1 on any
# difference, with the fix.
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

rules_source="$root/rules/remediation.yaml"
rules_copy="$root/deploy/helm/pipeline/files/rules/remediation.yaml"
rules_drift=0
if [[ ! -f "$rules_copy" ]]; then
  echo "missing in the chart: files/rules/remediation.yaml"
  rules_drift=1
elif [[ ! -f "$rules_source" ]]; then
  echo "only in the chart (removed from rules/?): files/rules/remediation.yaml"
  rules_drift=1
elif ! diff -u --label "rules/remediation.yaml" --label "deploy/helm/pipeline/files/rules/remediation.yaml" \
    "$rules_source" "$rules_copy"; then
  rules_drift=1
fi

if [[ $drift -ne 0 ]]; then
  echo
  echo "The chart's topic specs differ from topics/. Refresh the copy:"
  echo "  rm -f deploy/helm/pipeline/files/topics/*.yaml && cp topics/*.yaml deploy/helm/pipeline/files/topics/"
fi
if [[ $rules_drift -ne 0 ]]; then
  echo
  echo "The chart's remediation rules differ from rules/remediation.yaml. Refresh the copy:"
  echo "  cp rules/remediation.yaml deploy/helm/pipeline/files/rules/remediation.yaml"
fi
if [[ $drift -ne 0 || $rules_drift -ne 0 ]]; then
  exit 1
fi
echo "topic specs in sync: $(echo "$names" | wc -w) file(s); remediation rules in sync"
