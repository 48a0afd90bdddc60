#!/usr/bin/env bash
# Builds the package, runs R CMD check --no-manual, and ends with the real
# testthat totals as one line "N passed, N failed, N skipped". Exits non-zero
# on any test failure, check ERROR or check WARNING.
set -uo pipefail
cd "$(dirname "$0")/.."
rm -rf check && mkdir -p check
R CMD build --no-manual . > check/build.log 2>&1 || { cat check/build.log; echo "0 passed, 1 failed"; exit 1; }
tarball=$(ls -t sfpceval_*.tar.gz | head -n 1)
mv "$tarball" check/
export _R_CHECK_FORCE_SUGGESTS_=false
# Run the snapshot tests of error messages too (testthat skips them "on CRAN").
export NOT_CRAN=true
export _R_CHECK_CRAN_INCOMING_=false
export _R_CHECK_TESTS_NLINES_=0
export OMP_THREAD_LIMIT=2
(cd check && R CMD check --no-manual "$tarball" 2>&1 | tee check.log)
status=0
log=check/check.log
grep -q "^Status:.*ERROR" "$log" && status=1
grep -q "^Status:.*WARNING" "$log" && status=1
grep -q "^Status:" "$log" || status=1
rout=$(ls check/sfpceval.Rcheck/tests/testthat.Rout* 2>/dev/null | head -n 1)
totals=""
[ -n "$rout" ] && totals=$(grep -E "^\[ FAIL [0-9]+ \| WARN [0-9]+ \| SKIP [0-9]+ \| PASS [0-9]+ \]" "$rout" | tail -n 1)
if [ -z "$totals" ]; then
  echo "tools/check.sh: no testthat totals found (did the tests run?)"
  [ -n "$rout" ] && tail -n 40 "$rout"
  echo "0 passed, 1 failed"
  exit 1
fi
fail=$(sed -E 's/.*FAIL ([0-9]+).*/\1/' <<< "$totals")
skip=$(sed -E 's/.*SKIP ([0-9]+).*/\1/' <<< "$totals")
pass=$(sed -E 's/.*PASS ([0-9]+).*/\1/' <<< "$totals")
[ "$fail" -ne 0 ] && status=1
if [ "$status" -ne 0 ] && [ "$fail" -eq 0 ]; then
  echo "tools/check.sh: R CMD check reported an ERROR or WARNING (see above)"
  fail=1
fi
echo "$pass passed, $fail failed, $skip skipped"
exit $status
