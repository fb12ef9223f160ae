# SPDX-License-Identifier: Apache-2.0
# Jackfruit build and test entry points. Every target works on a fresh Debian 12 machine as root
# once `make deps` (apt packages, Go tools) has run; .ci/run does exactly that, then `make test`.

VERSION     := $(shell cat VERSION)
GO          ?= go
GOFLAGS_LD  := -ldflags "-s -w -X github.com/jackfruit/jackfruit/service.Version=$(VERSION)"
BIN         := bin
# Big, rebuildable artifacts (kernel bench initramfs, VM images) live outside the repository.
CACHE_DIR   ?= /var/cache/jackfruit-test
export CACHE_DIR VERSION

.PHONY: all build gendocs-bin rootfs deps lint test test-host kmod-test runtime-vm-test e2e deb bench demo clean docs-gen

all: build

build:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_LD) -o $(BIN)/jackfruit ./cmd/jackfruit
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_LD) -o $(BIN)/jackfruit-init ./cmd/jackfruit-init
	CGO_ENABLED=0 $(GO) build -o $(BIN)/memory_hog ./cmd/memory_hog
	CGO_ENABLED=0 $(GO) build -o $(BIN)/jfprobe ./cmd/jfprobe

# The test rootfs: Debian's busybox-static plus the static memory_hog and jfprobe (the
# isolation tests' syscall probe).
rootfs: build
	test/rootfs/build.sh $(BIN) build/rootfs

deps:
	test/deps.sh

lint:
	test/lint.sh

# The whole suite: lint, host tests, kernel tests on 6.1 and 6.12, the full-system VM test.
test: deps lint test-host kmod-test runtime-vm-test e2e

test-host: rootfs
	JACKFRUIT_TEST_ROOTFS=$(CURDIR)/build/rootfs $(GO) test -count=1 -timeout 30m ./...
	$(GO) test -count=1 -tags gendocs -run 'TestGenDocs$$' ./cmd/jackfruit

kmod-test:
	test/kmod/run.sh

# The runtime's, the seccomp filter's and the cgroup package's tests inside QEMU on Debian's
# 6.1 and 6.12 kernels with an initramfs root.
runtime-vm-test: rootfs
	service/runtime/testdata/initramfs-test.sh build/rootfs

e2e: deb rootfs
	test/e2e/run.sh

deb:
	packaging/build.sh

bench: deps build rootfs deb
	bench/run.sh

# demo.sh installs the dependencies itself (it is the README's first command, also run by hand),
# so no `deps` prerequisite here: it would run them twice.
demo:
	test/demo.sh

clean:
	rm -rf $(BIN) build

# The CLI with its gen-docs generator (cmd/jackfruit/gendocs.go): a build of its own, so that
# cobra/doc's package initialisation is not paid at every start of the shipped binary.
gendocs-bin:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_LD) -tags gendocs -o $(BIN)/jackfruit-gendocs ./cmd/jackfruit

# Man pages, shell completions and Markdown command reference, generated from the CLI itself.
docs-gen: gendocs-bin
	$(BIN)/jackfruit-gendocs gen-docs --man build/man --completions build/completions --markdown build/cli-reference
