# Sourced by the pipeline scripts: timed CMD ... runs CMD, prints its time, and fails as it does.
timed() {
  local start rc=0
  start=$(date +%s)
  "$@" || rc=$?
  echo "  $(($(date +%s) - start)) s: ${*:1:4} ... (exit $rc)" >&2
  return $rc
}
