# k1s build. `make` builds bin/k1s; see README.md for run and test.
GO            ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
KUBE_VERSION  := v1.37.2
KUBE_MAJOR    := 1
KUBE_MINOR    := 37
VERSION       ?= $(shell git describe --tags --match "v*" --dirty 2>/dev/null || echo "v0.1.0-dev+$$(git rev-parse --short HEAD 2>/dev/null || echo unknown)")
COMMIT        ?= $(shell git rev-parse --verify -q HEAD 2>/dev/null || echo unknown)
BUILD_DATE    ?= $(shell git log -1 --format=%cd --date=format:%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo 1970-01-01T00:00:00Z)
# providerless drops in-tree cloud providers and their volume plugins.
TAGS          := providerless no_btrfs no_zfs no_devmapper
KV            := k8s.io/component-base/version
LDFLAGS       := -s -w \
	-X github.com/k1s-io/k1s/internal/version.Version=$(VERSION) \
	-X $(KV).gitVersion=$(KUBE_VERSION) -X $(KV).gitMajor=$(KUBE_MAJOR) -X $(KV).gitMinor=$(KUBE_MINOR) \
	-X $(KV).gitCommit=$(COMMIT) -X $(KV).gitTreeState=clean -X $(KV).buildDate=$(BUILD_DATE) \
	-X k8s.io/client-go/pkg/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/client-go/pkg/version.gitMajor=$(KUBE_MAJOR) -X k8s.io/client-go/pkg/version.gitMinor=$(KUBE_MINOR)

export CGO_ENABLED := 1

# Helper binaries embedded in k1s (internal/nodebin), built from their own
# modules at pinned versions.
NODEBIN             := $(CURDIR)/internal/nodebin/bin
RUNC_VERSION        := v1.5.2
CONTAINERD_VERSION  := v2.4.2
CNI_PLUGINS_VERSION := v1.10.0
CRI_TOOLS_VERSION   := v1.37.0
CNI_PLUGINS         := plugins/main/bridge plugins/main/loopback plugins/ipam/host-local plugins/meta/portmap

.PHONY: all build deps run test unit e2e bench clean images
all: build

build: bin/k1s

# Always hand the build to go: its cache decides what is stale.
bin/k1s: nodebin FORCE
	$(GO) build -trimpath -tags "$(TAGS)" -ldflags "$(LDFLAGS)" -o $@ .
	ln -sf k1s bin/kubectl
FORCE:

.PHONY: nodebin
nodebin:
	GOBIN=$(NODEBIN) $(GO) install -trimpath -ldflags "-s -w" -tags "seccomp urfave_cli_no_docs" github.com/opencontainers/runc@$(RUNC_VERSION)
	GOBIN=$(NODEBIN) CGO_ENABLED=0 $(GO) install -trimpath -ldflags "-s -w" -tags no_grpc github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$(CONTAINERD_VERSION)
	GOBIN=$(NODEBIN) CGO_ENABLED=0 $(GO) install -trimpath -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$(CONTAINERD_VERSION)" -tags "no_btrfs no_zfs no_devmapper" github.com/containerd/containerd/v2/cmd/containerd@$(CONTAINERD_VERSION)
	GOBIN=$(NODEBIN) CGO_ENABLED=0 $(GO) install -trimpath -ldflags "-s -w" $(addprefix github.com/containernetworking/plugins/,$(addsuffix @$(CNI_PLUGINS_VERSION),$(CNI_PLUGINS)))
	GOBIN=$(NODEBIN) CGO_ENABLED=0 $(GO) install -trimpath -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$(CRI_TOOLS_VERSION)" sigs.k8s.io/cri-tools/cmd/crictl@$(CRI_TOOLS_VERSION)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(NODEBIN)/pause ./cmd/pause

# Air-gap bundle of the add-on images the manifests/ use (CoreDNS and
# k1s's ingress controller), built from Go sources at pinned versions
# since nothing can be pulled. CoreDNS is rebuilt only when its version (in
# its file name) changes; the ingress controller is handed to go, whose
# cache decides; the bundle is rewritten only when an input changed, so a
# second `make images` is quick.
COREDNS_VERSION := v1.15.0
# INGRESS_TAG must equal server.IngressImageTag (internal/server/addons.go).
INGRESS_TAG     := v0.1.0
IMAGES_DIR      := bin/images
IMAGES_ARCH     := amd64
AIRGAP_BUNDLE   := bin/k1s-airgap-images-$(IMAGES_ARCH).tar.zst
COREDNS_BIN     := $(IMAGES_DIR)/coredns-$(COREDNS_VERSION)
INGRESS_BIN     := $(IMAGES_DIR)/k1s-ingress
BUNDLE_SRCS     := $(filter-out %_test.go,$(wildcard internal/imagebuild/*.go cmd/airgap-bundle/*.go internal/atomicfile/*.go))

images: $(AIRGAP_BUNDLE)

$(COREDNS_BIN):
	rm -rf $@.gobin
	GOBIN=$(CURDIR)/$@.gobin CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGES_ARCH) $(GO) install -trimpath -ldflags "-s -w" github.com/coredns/coredns@$(COREDNS_VERSION)
	mv $@.gobin/coredns $@ && rmdir $@.gobin

$(INGRESS_BIN): FORCE
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGES_ARCH) $(GO) build -trimpath -ldflags "-s -w" -o $@.new ./cmd/k1s-ingress
	if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; fi

$(AIRGAP_BUNDLE): $(COREDNS_BIN) $(INGRESS_BIN) $(BUNDLE_SRCS) go.mod
	$(GO) run ./cmd/airgap-bundle -o $@ -arch $(IMAGES_ARCH) \
		-coredns $(COREDNS_BIN) -coredns-ref docker.io/coredns/coredns:$(COREDNS_VERSION:v%=%) \
		-ingress $(INGRESS_BIN) -ingress-ref docker.io/k1s-io/ingress:$(INGRESS_TAG)

# Installs what a fresh Debian machine lacks (needs root).
deps:
	bash scripts/install-deps.sh

# The bundle is linked into the default air-gap folder, as an offline user would.
run: deps build images
	mkdir -p /var/lib/k1s/agent/images
	ln -sf $(CURDIR)/$(AIRGAP_BUNDLE) /var/lib/k1s/agent/images/
	./bin/k1s server

unit:
	$(GO) test -count=1 ./internal/... ./cmd/... ./manifests/...

# End-to-end tests start the real binary; K1S_BIN points them at it.
e2e: build images
	K1S_BIN=$(CURDIR)/bin/k1s $(GO) test -count=1 -timeout 40m -v ./tests/...

test: deps build images unit e2e

# The network benchmark appends its section to the report the first one writes.
bench: build images
	$(GO) run ./tests/bench -bin $(CURDIR)/bin/k1s -out docs/benchmarks.md
	cd tests && K1S_BIN=$(CURDIR)/bin/k1s K1S_BENCH_REPORT=$(CURDIR)/docs/benchmarks.md \
		$(GO) test -count=1 -run '^$$' -bench BenchmarkNetwork -benchtime 1x -timeout 30m .

clean:
	rm -rf bin
