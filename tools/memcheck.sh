#!/usr/bin/env bash
# Memory checks of the C core (README, "Development"):
#   tools/memcheck.sh sanitize  [filter]  build with AddressSanitizer and
#       UndefinedBehaviorSanitizer into a private library and run the test
#       suite (the files matching the regular expression `filter`, default
#       all) under it;
#   tools/memcheck.sh valgrind  [filter]  run tests under `R -d valgrind`
#       (default: the tests of the C entry points, the whole suite is too
#       slow under valgrind);
#   tools/memcheck.sh gctorture           call every .Call entry point once
#       with valid and with hostile arguments under gctorture(TRUE).
# Each ends with one line "<tool>: N errors" and exits non-zero if N > 0.
# Everything goes to check/<tool>/ (the private library, logs, reports).
set -uo pipefail
cd "$(dirname "$0")/.."
tool=${1:?usage: tools/memcheck.sh sanitize|valgrind|gctorture [filter]}
filter=${2:-}
out=check/$tool
rm -rf "$out" && mkdir -p "$out/lib"
export NOT_CRAN=true OMP_THREAD_LIMIT=2

install_into() { # $1 = Makevars file or ""; installs a copy of the sources
  mkdir -p "$out/pkg"
  for f in DESCRIPTION NAMESPACE R src data man inst tests; do
    [ -e "$f" ] && cp -r "$f" "$out/pkg/"
  done
  rm -f "$out"/pkg/src/*.o "$out"/pkg/src/*.so
  if [ -n "$1" ]; then
    R_MAKEVARS_USER="$1" R CMD INSTALL --no-test-load --library="$out/lib" "$out/pkg" \
      > "$out/install.log" 2>&1
  else
    R CMD INSTALL --library="$out/lib" "$out/pkg" > "$out/install.log" 2>&1
  fi || { tail -n 30 "$out/install.log"; echo "$tool: install failed"; exit 2; }
}

# $out/run.R: run the test files matching $1 (of the same copy) against the
# installed copy.
write_run_r() {
  cat > "$out/run.R" <<RR
library(testthat)
res <- test_dir("$out/pkg/tests/testthat", package = "sfpceval", load_package = "installed",
                filter = if (nzchar("$1")) "$1" else NULL,
                reporter = "summary", stop_on_failure = FALSE)
df <- as.data.frame(res)
cat(sprintf("tests: %d expectations, %d failed, %d errors\\n",
            sum(df\$nb), sum(df\$failed), sum(df\$error)))
RR
}

case "$tool" in
sanitize)
  flags="-fsanitize=address,undefined -fno-omit-frame-pointer"
  cat > "$out/Makevars" <<MK
CC = gcc $flags
CFLAGS = -g -O1 -Wall
MK
  install_into "$PWD/$out/Makevars"
  export LD_PRELOAD=$(gcc -print-file-name=libasan.so)
  # R itself is not instrumented and frees memory at exit the leak checker
  # would report: leaks are not checked.
  export ASAN_OPTIONS="detect_leaks=0:log_path=$PWD/$out/asan:abort_on_error=0"
  export UBSAN_OPTIONS="print_stacktrace=1:log_path=$PWD/$out/ubsan"
  write_run_r "$filter"
  R_LIBS="$PWD/$out/lib" nice Rscript --vanilla "$out/run.R" 2>&1 | tee "$out/tests.log"
  unset LD_PRELOAD
  n=$(cat "$out"/asan.* "$out"/ubsan.* 2>/dev/null |
        grep -cE "ERROR: AddressSanitizer|runtime error:")
  ;;
valgrind)
  filter=${filter:-^(fuzz|cem|did|count-models|glmm-boot)$}
  install_into ""
  write_run_r "$filter"
  R_LIBS="$PWD/$out/lib" nice R --vanilla -q \
    -d "valgrind --error-exitcode=0 --log-file=$PWD/$out/valgrind.log" \
    -f "$out/run.R" 2>&1 | tee "$out/tests.log"
  n=$(grep -E "ERROR SUMMARY" "$out/valgrind.log" | sed -E 's/.*SUMMARY: ([0-9]+) errors.*/\1/' | head -n 1)
  grep -E "ERROR SUMMARY|definitely lost" "$out/valgrind.log"
  ;;
gctorture)
  install_into ""
  R_LIBS="$PWD/$out/lib" nice Rscript --vanilla tools/gctorture.R 2>&1 | tee "$out/tests.log"
  n=$(grep -cE "^FAIL" "$out/tests.log")
  ;;
*)
  echo "unknown tool $tool"; exit 2 ;;
esac
grep -E "^tests:" "$out/tests.log" | tail -n 1
echo "$tool: ${n:-?} errors"
[ "${n:-1}" = "0" ] && grep -qE "^tests: .*, 0 failed, 0 errors|^gctorture: " "$out/tests.log"
