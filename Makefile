# The README's two commands: `make demo` and `make test`.
R ?= R
RSCRIPT ?= Rscript

.PHONY: demo test deps doc install bench clean site

demo: install
	$(RSCRIPT) --vanilla tools/demo.R

test: deps
	tools/check.sh

deps:
	tools/install-deps.sh all

doc:
	$(RSCRIPT) --vanilla -e 'roxygen2::roxygenise()'

install:
	tools/install-deps.sh runtime
	$(R) CMD INSTALL .
	$(RSCRIPT) --vanilla -e 'library(sfpceval)' >/dev/null

bench: install
	for f in bench/*.R; do echo "== $$f"; $(RSCRIPT) --vanilla $$f; done

# The pkgdown site (docs/), where pkgdown is installed; the reference is
# grouped by the protocols' stages in _pkgdown.yml.
site: install
	$(RSCRIPT) --vanilla -e 'if (!requireNamespace("pkgdown", quietly = TRUE)) stop("make site needs the pkgdown package (apt-get install r-cran-pkgdown)"); pkgdown::build_site(preview = FALSE)'

clean:
	rm -rf check docs src/*.o src/*.so sfpceval_*.tar.gz

# Memory checks of the C core (see README, "Development"); results in check/.
.PHONY: sanitize valgrind gctorture
sanitize:
	tools/memcheck.sh sanitize

valgrind:
	tools/memcheck.sh valgrind

gctorture:
	tools/memcheck.sh gctorture
