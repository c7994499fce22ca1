# skiff — the two commands a fresh machine needs:
#   make demo   a local demo cluster syncing the embedded example repo
#   make test   unit tests with -race and the end-to-end suite on real Podman, git and Raft
GO      ?= go
TAGS    := remote,exclude_graphdriver_btrfs,btrfs_noversion,exclude_graphdriver_devicemapper,containers_image_openpgp
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/skiffhq/skiff/internal/version.Version=$(VERSION)

export GOFLAGS := -buildvcs=false -tags=$(TAGS)
export CONTAINERS_CONF ?= $(CURDIR)/packaging/dev/containers.conf

.PHONY: all build deps images demo test test-unit test-e2e vet bench bench-cluster bench-dns bench-ingress bench-net bench-all cross deb clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/skiff ./cmd/skiff

deps:
	@packaging/dev/setup-host.sh

# The demo and test images, built locally from fixtures/ (no registry needed).
images: deps
	fixtures/build-images.sh

demo: deps build images
	fixtures/demo.sh

vet:
	CGO_ENABLED=0 $(GO) vet ./...

# Unit tests and end-to-end tests (real Podman, real git, real Raft over TCP) in one run.
test: deps build vet
	SKIFF_E2E=1 SKIFF_BIN=$(CURDIR)/bin/skiff CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 30m ./...

# Fast loop while developing: no Podman, no processes.
test-unit:
	CGO_ENABLED=1 $(GO) test -race -short -count=1 ./...

# Benchmarks print tables (numbers in the README). make bench = the single node; the others
# need root (simulated nodes, namespaces) and install their peers (nginx, dnsperf, ...).
bench: deps build
	bench/run.sh

bench-cluster: deps build
	SKIFF_BIN=$(CURDIR)/bin/skiff $(GO) run ./bench/cluster

bench-dns: deps
	bench/dns.sh

bench-ingress: deps
	bench/ingress.sh

bench-net: deps
	bench/net.sh

bench-all: bench bench-cluster bench-dns bench-ingress bench-net

cross:
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/skiff-linux-amd64 ./cmd/skiff
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/skiff-linux-arm64 ./cmd/skiff
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/skiff-linux-armv7 ./cmd/skiff

# Debian packages (amd64, arm64, armhf) with the systemd unit: dist/skiff_VERSION_ARCH.deb
deb: cross
	packaging/deb/build.sh $(VERSION)

clean:
	rm -rf bin dist
