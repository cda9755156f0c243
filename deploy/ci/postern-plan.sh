#!/usr/bin/env bash
# `postern plan` for a pull request: what the change does to the gateway configuration,
# computed offline from the manifests of the pull request and of its base branch, before
# anything is applied. Any CI system can run it from a checkout with the base ref fetched.
#
#   deploy/ci/postern-plan.sh [-b BASE_REF] [-n NAMESPACE] [-o SUMMARY.md] DIR...
#
#   -b  the base to compare with (default: $POSTERN_PLAN_BASE or origin/main)
#   -n  namespace of objects that name none (as `postern plan -n`)
#   -o  also write a Markdown summary there (e.g. $GITHUB_STEP_SUMMARY, or a file to post
#       as a merge-request comment)
#   $POSTERN  the postern binary (default: `postern` on PATH)
#
# Exit status: 0 when the manifests are valid (whether or not they change anything),
# 1 when they are not (every error names the file, line, object and field), 2 on usage
# errors. A base that does not render (or does not have the directories yet) is compared
# as an empty configuration.
set -euo pipefail

base=${POSTERN_PLAN_BASE:-origin/main}
namespace=
summary=
postern=${POSTERN:-postern}
usage() { sed -n '2,20p' "$0" >&2; exit 2; }
while getopts "b:n:o:h" opt; do
  case $opt in
    b) base=$OPTARG ;;
    n) namespace=$OPTARG ;;
    o) summary=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || usage
command -v "$postern" >/dev/null 2>&1 || { echo "postern-plan: $postern not found (set \$POSTERN)" >&2; exit 2; }
git rev-parse --verify -q "$base^{commit}" >/dev/null || { echo "postern-plan: base $base is not a commit here (fetch it first)" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ns_args=()
[ -n "$namespace" ] && ns_args=(-n "$namespace")

# The base's manifests, rendered: what runs now if the base was applied.
base_args=()
for d in "$@"; do
  d=${d%/}
  if git cat-file -e "$base:$d" 2>/dev/null; then
    git archive "$base" -- "$d" | tar -x -C "$work"
    base_args+=(-f "$work/$d")
  fi
done
against=()
base_note="base $base"
if [ ${#base_args[@]} -eq 0 ]; then
  base_note="base $base has none of: $* (compared with an empty configuration)"
elif "$postern" render "${base_args[@]}" "${ns_args[@]}" -o "$work/base.yaml" 2>"$work/base.err"; then
  against=(--against "$work/base.yaml")
else
  base_note="base $base does not render (compared with an empty configuration): $(head -c 2000 "$work/base.err")"
fi

files=()
for d in "$@"; do files+=(-f "$d"); done
set +e
"$postern" plan "${files[@]}" "${ns_args[@]}" "${against[@]}" >"$work/plan.txt" 2>"$work/diagnostics.txt"
rc=$?
set -e

case $rc in
  0) verdict="No changes to the gateway configuration." ;;
  2) verdict="The gateway configuration changes (below)." ;;
  *) verdict="Errors: fix them before merging." ;;
esac
cat "$work/diagnostics.txt" >&2
cat "$work/plan.txt"
echo "postern-plan: $verdict ($base_note)" >&2

if [ -n "$summary" ]; then
  {
    echo "### postern plan"
    echo
    echo "$verdict"
    echo
    echo "Compared with $base_note."
    if [ -s "$work/diagnostics.txt" ]; then
      echo
      echo '```'
      cat "$work/diagnostics.txt"
      echo '```'
    fi
    if [ -s "$work/plan.txt" ]; then
      echo
      echo '```diff'
      cat "$work/plan.txt"
      echo '```'
    fi
  } >>"$summary"
fi

[ $rc -eq 0 ] || [ $rc -eq 2 ]
