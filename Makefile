# The two commands a newcomer needs: `make demo` and `make test` (see README.md).
SWIFT ?= swift
# bash, for PIPESTATUS in the test recipe.
SHELL := /bin/bash
TURF_DEBUG := .build/debug/turf
TURF_RELEASE := .build/release/turf

.PHONY: deps build release demo test format lint bench fuzz fuzz-build fuzz-merge clean install install-build uninstall dist

deps:
	@bash scripts/install-deps.sh

build: deps
	$(SWIFT) build --product turf

release: deps
	$(SWIFT) build -c release --product turf

# Installs what is missing, builds, and starts a local match against bots.
demo: release
	$(TURF_RELEASE) demo

# `make install` puts the release `turf`, its bash, zsh and fish completions (swift-argument-parser's
# --generate-completion-script) and its manual page (swift-argument-parser's generate-manual, the
# tool behind its `swift package generate-manual` plugin) under PREFIX: ~/.local unless you say
# `PREFIX=/usr/local`; packagers add DESTDIR. `make uninstall`, with the same variables, removes
# exactly those files, then the directories they leave empty (never PREFIX itself).
# The binary and the generator are built only when missing or older than the sources, so
# `sudo make install PREFIX=/usr/local` after `make install-build` copies and builds nothing as root.
PREFIX ?= $(HOME)/.local
BINDIR ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
BASH_COMPLETION_DIR ?= $(DATADIR)/bash-completion/completions
ZSH_COMPLETION_DIR ?= $(DATADIR)/zsh/site-functions
FISH_COMPLETION_DIR ?= $(DATADIR)/fish/vendor_completions.d
# What is installed: the release build (CONFIG=debug: the debug build; INSTALL_TURF=PATH: that binary).
CONFIG ?= release
INSTALL_TURF ?= .build/$(CONFIG)/turf
GENERATE_MANUAL ?= .build/debug/generate-manual
# The manual's date: SOURCE_DATE_EPOCH's, else the last commit's (same source, same page), else today.
MAN_DATE ?= $(shell if [ -n "$$SOURCE_DATE_EPOCH" ]; then date -u -d "@$$SOURCE_DATE_EPOCH" +%F; \
	else git log -1 --format=%cs 2>/dev/null || date -u +%F; fi)
INSTALLED := $(BINDIR)/turf $(MANDIR)/man1/turf.1 $(BASH_COMPLETION_DIR)/turf $(ZSH_COMPLETION_DIR)/_turf \
	$(FISH_COMPLETION_DIR)/turf.fish
SWIFT_INPUTS := Package.swift $(wildcard Package.resolved) $(shell find Sources -type f)

.build/release/turf .build/debug/turf: $(SWIFT_INPUTS)
	@bash scripts/install-deps.sh
	$(SWIFT) build -c $(word 2,$(subst /, ,$@)) --product turf
	@touch $@

.build/debug/generate-manual: Package.swift $(wildcard Package.resolved)
	@bash scripts/install-deps.sh
	$(SWIFT) build --product generate-manual
	@touch $@

install-build: $(INSTALL_TURF) $(GENERATE_MANUAL)

install: install-build
	@set -eu; out=$$(mktemp -d); trap 'rm -rf "$$out"' EXIT; \
	for sh in bash zsh fish; do "$(INSTALL_TURF)" --generate-completion-script $$sh > "$$out/$$sh"; done; \
	"$(GENERATE_MANUAL)" "$(INSTALL_TURF)" --date "$(MAN_DATE)" --output-directory "$$out"; \
	install -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(MANDIR)/man1" "$(DESTDIR)$(BASH_COMPLETION_DIR)" \
	  "$(DESTDIR)$(ZSH_COMPLETION_DIR)" "$(DESTDIR)$(FISH_COMPLETION_DIR)"; \
	install -m 0755 "$(INSTALL_TURF)" "$(DESTDIR)$(BINDIR)/turf"; \
	install -m 0644 "$$out/turf.1" "$(DESTDIR)$(MANDIR)/man1/turf.1"; \
	install -m 0644 "$$out/bash" "$(DESTDIR)$(BASH_COMPLETION_DIR)/turf"; \
	install -m 0644 "$$out/zsh" "$(DESTDIR)$(ZSH_COMPLETION_DIR)/_turf"; \
	install -m 0644 "$$out/fish" "$(DESTDIR)$(FISH_COMPLETION_DIR)/turf.fish"; \
	for f in $(INSTALLED); do echo "installed $(DESTDIR)$$f"; done; \
	case ":$$PATH:" in *":$(BINDIR):"*) ;; *) [ -n "$(DESTDIR)" ] || \
	  echo "note: $(BINDIR) is not on your PATH; add it (e.g. in ~/.profile) to run turf by name";; esac

uninstall:
	@set -eu; for f in $(INSTALLED); do \
	  if [ -e "$(DESTDIR)$$f" ] || [ -L "$(DESTDIR)$$f" ]; then rm -f "$(DESTDIR)$$f"; echo "removed $(DESTDIR)$$f"; fi; \
	done; \
	for d in $(dir $(INSTALLED)); do d="$(DESTDIR)$${d%/}"; \
	  while case "$$d/" in "$(DESTDIR)$(PREFIX)/"?*) true;; *) false;; esac && rmdir "$$d" 2>/dev/null; do \
	    d="$${d%/*}"; done; \
	done

# `make dist`: a release `turf` that runs without Swift, for a friend (scripts/dist.sh):
# dist/turf-VERSION-linux-ARCH and its .sha256. The Swift runtime, Foundation, libsodium and ncursesw
# are linked in; it needs glibc, libstdc++ and a terminfo database, which every distribution has.
dist: deps
	@SWIFT="$(SWIFT)" bash scripts/dist.sh

# Installs what is missing and runs every test (CI runs exactly this through .ci/run). A warning from
# Sources/ or Tests/ in the build fails it (scripts/check-warnings.sh; CI builds from scratch, so
# every file is compiled and every warning seen).
# It also builds swift-argument-parser's generate-manual (seconds), with which the install tests run
# `make install` on the debug build. The dist tests run the binary of `make dist` when dist/ has it;
# TURF_TEST_DIST=1 builds it first (a release build from scratch: 5-6 minutes on 2 cores, which CI's
# ~20-minute budget does not have room for) and makes them fail rather than skip without it.
# The style is the formatter's (.swift-format: 4 spaces, 120 columns): `make format` applies it,
# `make lint` (part of `make test`) fails when a file does not follow it.
FORMAT_PATHS := Sources Tests Package.swift Fuzz/Sources Fuzz/Package.swift

format:
	$(SWIFT) format format --in-place --recursive --parallel $(FORMAT_PATHS)

lint:
	$(SWIFT) format lint --strict --recursive --parallel $(FORMAT_PATHS)

test: deps lint
	@mkdir -p .build
	$(SWIFT) build --build-tests 2>&1 | tee .build/build.log; exit $${PIPESTATUS[0]}
	@scripts/check-warnings.sh .build/build.log
	$(SWIFT) build --product generate-manual
	@if [ "$(TURF_TEST_DIST)" = 1 ]; then $(MAKE) --no-print-directory dist; fi
	$(SWIFT) test --skip-build --parallel --num-workers 2 2>&1 | tee .build/test.log | grep -vE '^(Test Case .* (started|passed)|◇ Test .* started)' ; exit $${PIPESTATUS[0]}

bench: release
	$(TURF_RELEASE) bench replay --json
	$(TURF_RELEASE) bench late-op --json
	$(TURF_RELEASE) bench crypto --json
	$(TURF_RELEASE) bench session --json
	$(TURF_RELEASE) bench flood --json
	$(TURF_RELEASE) bench dht --nodes 10000 --churn 0.2 --json
	$(TURF_RELEASE) bench render --json
	$(TURF_RELEASE) bench netmatch --json

# libFuzzer targets for every parser of untrusted bytes (Fuzz/, a separate package so the game is never
# instrumented). Runs each for FUZZ_SECONDS over the regression corpus in Fuzz/Corpus/; new inputs
# go to .build/fuzz-corpus/, crashes to fuzz-artifacts/. `make fuzz-merge` folds the new inputs
# into the committed corpus, minimised.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := noise transport frames krpc replay map journal
FUZZ_BUILD := --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp

fuzz-build:
	cd Fuzz && $(SWIFT) build $(FUZZ_BUILD)

fuzz: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p .build/fuzz-corpus/$$t fuzz-artifacts/$$t; \
	  echo "== fuzz-$$t for $(FUZZ_SECONDS) s"; \
	  Fuzz/.build/debug/fuzz-$$t -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -print_final_stats=1 \
	    -artifact_prefix=fuzz-artifacts/$$t/ .build/fuzz-corpus/$$t Fuzz/Corpus/$$t; \
	done

fuzz-merge: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	  Fuzz/.build/debug/fuzz-$$t -merge=1 -rss_limit_mb=4096 Fuzz/Corpus/$$t .build/fuzz-corpus/$$t; \
	done

clean:
	rm -rf .build dist
