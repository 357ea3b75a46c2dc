# revive. On a fresh Debian or Ubuntu machine, as root:
#   make demo    build, start a node, checkpoint and restore a container, show its memory survived
#   make test    every test: unit tests, fuzzing, then end-to-end tests on every node flavour
CARGO   ?= cargo
PREFIX  ?= /usr/local
FLAVOUR ?= lts
SHARE   := $(PREFIX)/share/revive

.PHONY: all build debug-build test unit fuzz fuzz-test e2e demo node install bench conformance lint host-deps rootfs clean-nodes clean-cache

all: build

build:
	$(CARGO) build --workspace --release

debug-build:
	$(CARGO) build --workspace

host-deps:
	@scripts/require-root.sh $(firstword $(MAKECMDGOALS) host-deps)
	@scripts/host-deps.sh

# Unit tests first (fast), then a short fuzzing of every parser of untrusted input, then the
# end-to-end tests, which start real nodes.
test: host-deps debug-build unit fuzz-test e2e

unit:
	$(CARGO) test --workspace --lib --bins

# Every fuzz target for FUZZ_SECONDS each (scripts/fuzz.sh; docs/fuzzing.md).
FUZZ_SECONDS ?= 20
fuzz:
	@FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

# What make test fuzzes: every target, TEST_FUZZ_SECONDS each, two at a time (so the time is
# bounded whatever the machine: 10 s per pair of targets, after the build).
TEST_FUZZ_SECONDS ?= 10
fuzz-test:
	@FUZZ_SECONDS=$(TEST_FUZZ_SECONDS) FUZZ_JOBS=2 scripts/fuzz.sh

e2e:
	@scripts/require-root.sh e2e
	$(CARGO) test --workspace --test '*'

demo: host-deps debug-build
	target/debug/revive-node demo --flavour $(FLAVOUR)

# A shell inside a fresh node (FLAVOUR=lts|latest|stable); the node goes away when you leave.
node: host-deps debug-build
	target/debug/revive-node shell --flavour $(FLAVOUR)

# Build (or verify) every flavour's cached node root filesystem and the programs built from Go
# modules (containerd 2.3 and 2.4, runc, crictl, the kubelet).
rootfs: host-deps debug-build
	target/debug/revive-node rootfs

install: build
	install -D -m 0755 target/release/containerd-shim-revive-v2 $(DESTDIR)$(PREFIX)/bin/containerd-shim-revive-v2
	install -D -m 0755 target/release/revive-snapshotter $(DESTDIR)$(PREFIX)/bin/revive-snapshotter
	install -D -m 0755 target/release/revive $(DESTDIR)$(PREFIX)/bin/revive
	install -D -m 0644 config/revive-snapshotter.service $(DESTDIR)/etc/systemd/system/revive-snapshotter.service
	install -D -m 0644 config/containerd-1.7.toml $(DESTDIR)$(SHARE)/containerd-1.7.toml
	install -D -m 0644 config/containerd-2.x.toml $(DESTDIR)$(SHARE)/containerd-2.x.toml
	install -D -m 0644 config/runtimeclass.yaml $(DESTDIR)$(SHARE)/runtimeclass.yaml
	install -D -m 0644 config/checkpoint-rbac.yaml $(DESTDIR)$(SHARE)/checkpoint-rbac.yaml
	install -D -m 0644 config/migrate.yaml $(DESTDIR)$(SHARE)/migrate.yaml
	scripts/install-containerd-config.sh $(DESTDIR)$(SHARE)

bench:
	@scripts/require-root.sh bench
	@scripts/host-deps.sh
	$(CARGO) build --workspace --release
	@rc=0; REVIVE_BIN_DIR=target/release target/release/revive-bench \
		$(foreach f,$(FLAVOUR),--flavour $(f)) --out target/bench/results.md || rc=$$?; \
	if [ $$rc -eq 2 ]; then \
		echo ""; \
		echo "*******************************************************************************"; \
		echo "*** revive: make bench: a runtime could not run, so its column says so and   ***"; \
		echo "*** holds no numbers (see 'Not measured' in target/bench/results.md). Not a   ***"; \
		echo "*** build failure: the report above is everything that could be measured.     ***"; \
		echo "*******************************************************************************"; \
	elif [ $$rc -ne 0 ]; then exit $$rc; fi

# containerd's own integration/client tests, every one, for the Go shim and revive side by side
# on every flavour (CONFORMANCE_FLAVOURS=lts limits them), each with a timeout; the report to
# target/conformance/report.md, every test's output to target/conformance/logs. Then every
# test again for revive on revive-snapshotter (TEST_SNAPSHOTTER=revive), reported in
# target/conformance/report-revive-snapshotter.md.
conformance: host-deps debug-build
	@scripts/require-root.sh conformance
	@rc=0; target/debug/revive-conformance \
		$(foreach f,$(or $(CONFORMANCE_FLAVOURS),lts latest stable),--flavour $(f)) || rc=$$?; \
	if [ $$rc -eq 2 ]; then \
		echo ""; \
		echo "*******************************************************************************"; \
		echo "*** revive: make conformance: tests that pass with the Go shim fail with      ***"; \
		echo "*** revive (listed above; see target/conformance/report.md). The report is    ***"; \
		echo "*** complete.                                                                 ***"; \
		echo "*******************************************************************************"; \
	fi; \
	snap=0; target/debug/revive-conformance \
		$(foreach f,$(or $(CONFORMANCE_FLAVOURS),lts latest stable),--flavour $(f)) \
		--runtime io.containerd.revive.v2 --snapshotter revive \
		--out target/conformance/report-revive-snapshotter.md \
		--logs target/conformance/logs-revive-snapshotter || snap=$$?; \
	if [ $$rc -eq 0 ]; then rc=$$snap; fi; exit $$rc

# The fuzz crate too (its own workspace); its clippy builds libFuzzer, so it needs C++.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@if command -v $${CXX:-c++} >/dev/null 2>&1; then \
		echo "$(CARGO) clippy --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings"; \
		$(CARGO) clippy --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings; \
	else \
		echo "*** revive: make lint: the fuzz crate NOT linted: no C++ compiler (apt-get install g++) ***"; \
	fi

# Node directories kept by failed tests (their logs); the root filesystem cache stays.
clean-nodes:
	@scripts/require-root.sh clean-nodes
	@! grep -qs /var/lib/revive-test /proc/mounts || { echo "revive: something is mounted under /var/lib/revive-test; not removing it" >&2; exit 1; }
	rm -rf /var/lib/revive-test/nodes
	@# Empty cgroups of nodes whose harness was killed (a live node's cannot be removed).
	@find /sys/fs/cgroup -mindepth 1 -maxdepth 2 -type d -name 'revive-node-*' 2>/dev/null | \
	  while read -r d; do find "$$d" -depth -type d -exec rmdir {} + 2>/dev/null || true; done

clean-cache:
	@scripts/require-root.sh clean-cache
	rm -rf /var/cache/revive/nodes /var/cache/revive/conformance
