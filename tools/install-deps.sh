#!/usr/bin/env bash
# Installs, through Debian's prebuilt r-cran-* packages, every R package in
# tools/deps.txt that is not installed yet, and pandoc for the vignettes.
# Usage: tools/install-deps.sh [all|runtime]
#   runtime: nothing beyond base R (the package imports base R only)
#   all:     everything the tests, vignettes and benchmarks use (default)
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
[ "$what" = runtime ] && exit 0

missing_r=$(Rscript --vanilla -e '
  l <- grep("^[[:space:]]*(#|$)", readLines("tools/deps.txt"), value = TRUE,
            invert = TRUE)
  f <- strsplit(trimws(l), "[[:space:]]+")
  pkg <- vapply(f, `[`, "", 1L); deb <- vapply(f, `[`, "", 2L)
  ok <- vapply(pkg, function(p) suppressMessages(requireNamespace(p, quietly = TRUE)), TRUE)
  cat(deb[!ok], sep = " ")' 2>/dev/null)
missing_sys=""
command -v pandoc >/dev/null 2>&1 || missing_sys="pandoc"
todo="$missing_r $missing_sys"
if [ -z "${todo// /}" ]; then
  echo "install-deps: everything is installed"
  exit 0
fi
echo "install-deps: installing $todo"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps: apt-get is not available; install these by hand: $todo" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $todo
