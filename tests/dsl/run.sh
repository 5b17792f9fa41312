#!/bin/sh
# run.sh — the DSL's golden tests, through the real binary:
#   - every examples/*.lua compiles, and its plan (weir lint -o json) and its summary (weir lint)
#     match tests/dsl/golden/NAME.plan.json and NAME.lint.txt exactly;
#   - every tests/dsl/broken/*.lua fails with exit status 1, nothing on stdout, and exactly the
#     stderr in its .err file;
#   - weir lint's usage errors, missing and oversized files.
# Each lint is its own process, so the goldens also prove that plans do not depend on Lua's
# per-process hash seed. With a sanitizer build of weir, any leak report fails the comparison.
#
# Usage: sh tests/dsl/run.sh build/weir
#        UPDATE=1 sh tests/dsl/run.sh build/weir    rewrites the expected files (review the diff!)
set -u
if [ $# -ne 1 ] || [ ! -x "$1" ]; then
  echo "usage: sh tests/dsl/run.sh path/to/weir" >&2
  exit 2
fi
WEIR=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0

ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }

# same NAME EXPECTED ACTUAL: compares, or with UPDATE=1 stores ACTUAL as EXPECTED
same() {
  if [ "${UPDATE:-}" = 1 ]; then
    cp "$3" "$2"
    ok "$1 (updated)"
  elif cmp -s "$2" "$3"; then
    ok "$1"
  else
    bad "$1"
    if [ -f "$2" ]; then diff -u "$2" "$3" | head -n 30 | sed 's/^/    /'; else echo "    missing $2"; fi
  fi
}

for f in examples/*.lua; do
  n=$(basename "$f" .lua)
  "$WEIR" lint -o json "$f" >"$tmp/$n.plan.json" 2>"$tmp/$n.stderr"
  rc=$?
  if [ $rc -ne 0 ] || [ -s "$tmp/$n.stderr" ]; then
    bad "golden $n: weir lint -o json exited $rc"
    sed 's/^/    /' "$tmp/$n.stderr"
    continue
  fi
  same "golden $n plan" "tests/dsl/golden/$n.plan.json" "$tmp/$n.plan.json"
  "$WEIR" lint "$f" >"$tmp/$n.lint.txt" 2>&1
  same "golden $n summary" "tests/dsl/golden/$n.lint.txt" "$tmp/$n.lint.txt"
done

for f in tests/dsl/broken/*.lua; do
  n=$(basename "$f" .lua)
  "$WEIR" lint "$f" >"$tmp/$n.out" 2>"$tmp/$n.err"
  rc=$?
  if [ $rc -ne 1 ]; then
    bad "broken $n: exit status $rc, expected 1"
  elif [ -s "$tmp/$n.out" ]; then
    bad "broken $n: printed a summary"
  else
    same "broken $n" "tests/dsl/broken/$n.err" "$tmp/$n.err"
  fi
done

# expect NAME STATUS COMMAND...: the exit status of a lint command line
expect() {
  name=$1 want=$2
  shift 2
  "$@" >"$tmp/cli.out" 2>"$tmp/cli.err"
  got=$?
  if [ $got -eq "$want" ]; then ok "lint $name"; else bad "lint $name: exit status $got, expected $want"; fi
}
expect "--help" 0 "$WEIR" lint --help
grep -q '^usage: weir lint' "$tmp/cli.out" || bad "lint --help prints its usage"
expect "without files" 2 "$WEIR" lint
expect "bad output format" 2 "$WEIR" lint -o yaml examples/churn.lua
expect "missing file" 1 "$WEIR" lint "$tmp/nope.lua"
grep -q 'nope.lua: cannot read: no such file' "$tmp/cli.err" || bad "lint names the missing file"
head -c 1100000 /dev/zero | tr '\0' '-' >"$tmp/huge.lua"
expect "oversized file" 1 "$WEIR" lint "$tmp/huge.lua"
grep -q 'huge.lua: the file is larger than 1024 KiB' "$tmp/cli.err" || bad "lint says the file is too large"
expect "one bad file of two" 1 "$WEIR" lint examples/churn.lua tests/dsl/broken/cycle.lua
grep -q '^pipeline churn (examples/churn.lua)' "$tmp/cli.out" || bad "lint still summarises the good file"
expect "json of two files" 0 "$WEIR" lint -o json examples/churn.lua examples/sweep.lua
[ "$(grep -c '^{' "$tmp/cli.out")" = 2 ] || bad "lint -o json prints one plan per file"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
