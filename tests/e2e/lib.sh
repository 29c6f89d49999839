# lib.sh — sourced by the command-line tests: a temporary directory removed at exit, and
#   check NAME CMD...                 passes when CMD succeeds;
#   expect_error NAME PATTERN CMD...  passes on exit status 1 with exactly one stderr line
#                                     containing PATTERN (the one-line error policy).
# The caller prints "$passes passed, $fails failed" and exits with $((fails > 0)).
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fails=0 passes=0
check() {
  local name=$1; shift
  if "$@"; then passes=$((passes + 1)); else echo "FAIL: $name"; fails=$((fails + 1)); fi
}
not() { ! "$@"; }
expect_error() {
  local name=$1 pattern=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  local lines; lines=$(wc -l <"$tmp/err")
  if [[ $rc -eq 1 && $lines -eq 1 ]] && grep -qF -- "$pattern" "$tmp/err"; then
    passes=$((passes + 1))
  else
    echo "FAIL: $name (rc=$rc, $lines stderr lines)"; cat "$tmp/err"; fails=$((fails + 1))
  fi
}
