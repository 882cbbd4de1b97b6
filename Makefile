# k1s build. `make` builds bin/k1s; see README.md for run and test.
GO            ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
KUBE_VERSION  := v1.37.2
KUBE_MAJOR    := 1
KUBE_MINOR    := 37
# A build from a tree with uncommitted changes to tracked files says so.
TREE_STATE    ?= $(shell test -z "$$(git status --porcelain --untracked-files=no 2>/dev/null)" && echo clean || echo dirty)
VERSION       ?= $(shell git describe --tags --match "v*" --dirty 2>/dev/null || echo "v0.1.0-dev+$$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$$(test $(TREE_STATE) = dirty && echo -dirty)")
COMMIT        ?= $(shell git rev-parse --verify -q HEAD 2>/dev/null || echo unknown)
BUILD_DATE    ?= $(shell git log -1 --format=%cd --date=format:%Y-%m-%dT%H:%M:%SZ 2>/dev/null || echo 1970-01-01T00:00:00Z)
# providerless drops in-tree cloud providers and their volume plugins.
# kustomize_disable_go_plugin_support keeps package plugin (kubectl's
# kustomize loads Go plugins with it) out: with cgo it makes the linker
# export every symbol and keep every method (52 MB of bin/k1s).
TAGS          := providerless no_btrfs no_zfs no_devmapper kustomize_disable_go_plugin_support
KV            := k8s.io/component-base/version
LDFLAGS       := -s -w \
	-X github.com/k1s-io/k1s/internal/version.Version=$(VERSION) \
	-X $(KV).gitVersion=$(KUBE_VERSION) -X $(KV).gitMajor=$(KUBE_MAJOR) -X $(KV).gitMinor=$(KUBE_MINOR) \
	-X $(KV).gitCommit=$(COMMIT) -X $(KV).gitTreeState=$(TREE_STATE) -X $(KV).buildDate=$(BUILD_DATE) \
	-X k8s.io/client-go/pkg/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/client-go/pkg/version.gitMajor=$(KUBE_MAJOR) -X k8s.io/client-go/pkg/version.gitMinor=$(KUBE_MINOR)

export CGO_ENABLED := 1

.PHONY: all build deps release-deps run test test-all unit e2e e2e-all bench bench-release clean images dce-check
all: build

build: bin/k1s

# Always hand the build to go: its cache decides what is stale.
bin/k1s: nodebin FORCE
	$(GOTARGET) $(GO) build -trimpath -tags "$(TAGS)" -ldflags "$(LDFLAGS)" -o $@ .
	ln -sf k1s bin/kubectl
FORCE:

# GOARCH the node binaries and the image bundle are built for: this
# machine's, except where `make release` sets it per architecture.
HOST_ARCH := $(shell $(GO) env GOARCH)
ARCH      ?= $(HOST_ARCH)
# Cross C compilers (Debian's gcc-<triple> packages) and the multiarch
# folder holding the target's libseccomp.pc, for cgo when ARCH is not the
# host's.
TRIPLE_amd64 := x86_64-linux-gnu
TRIPLE_arm64 := aarch64-linux-gnu
CROSS_ENV    := $(if $(filter-out $(HOST_ARCH),$(ARCH)),CC=$(TRIPLE_$(ARCH))-gcc PKG_CONFIG_LIBDIR=/usr/lib/$(TRIPLE_$(ARCH))/pkgconfig)
GOTARGET     := GOOS=linux GOARCH=$(ARCH) $(CROSS_ENV)

# Helper binaries embedded in k1s (internal/nodebin), built from their own
# modules at pinned versions, into bin/nodebin/<GOARCH>, then packed by
# cmd/k1s-pack into one zstd-compressed tar per GOARCH in
# internal/nodebin/bin/<GOARCH>/helpers.tar.zst, which k1s embeds. runc (the only
# one with cgo, for libseccomp) is linked statically as upstream releases
# it, so it needs no libseccomp on the node; netgo and osusergo keep it off
# glibc's NSS, which a static binary cannot load.
NODEBIN             := $(CURDIR)/bin/nodebin/$(ARCH)
NODEBIN_EMBED       := $(CURDIR)/internal/nodebin/bin/$(ARCH)
# Archive order: pause first (read at every node start), then the tools
# `k1s crictl` and `k1s containerd` run from memory.
NODEBIN_NAMES       := pause crictl containerd containerd-shim-runc-v2 runc bridge host-local loopback portmap
RUNC_VERSION        := v1.5.2
CONTAINERD_VERSION  := v2.4.2
CNI_PLUGINS_VERSION := v1.10.0
CRI_TOOLS_VERSION   := v1.37.0
CNI_PLUGINS         := plugins/main/bridge plugins/main/loopback plugins/ipam/host-local plugins/meta/portmap
STATIC_LDFLAGS      := -linkmode external -extldflags -static
# `go install` refuses GOBIN for another GOARCH and installs into
# $GOPATH/bin/linux_<arch> instead: a private GOPATH (sharing the module
# cache) receives those, and they are copied into NODEBIN.
XGOINSTALL    = GOMODCACHE=$(shell $(GO) env GOMODCACHE) GOBIN= $(GOTARGET) $(GO) install
ifeq ($(ARCH),$(HOST_ARCH))
XGOBIN       :=
GOINSTALL    := GOBIN=$(NODEBIN) $(GOTARGET) $(GO) install
NODEBIN_COPY := true
else
XGOBIN       := /linux_$(ARCH)
XGOPATH      := $(CURDIR)/bin/gopath
GOINSTALL    := GOPATH=$(XGOPATH) $(XGOINSTALL)
NODEBIN_COPY := cp -p $(XGOPATH)/bin$(XGOBIN)/* $(NODEBIN)/
endif

.PHONY: nodebin
nodebin:
	mkdir -p $(NODEBIN)
	$(GOINSTALL) -trimpath -ldflags "-s -w $(STATIC_LDFLAGS)" -tags "seccomp urfave_cli_no_docs netgo osusergo" github.com/opencontainers/runc@$(RUNC_VERSION)
	CGO_ENABLED=0 $(GOINSTALL) -trimpath -ldflags "-s -w" -tags no_grpc github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$(CONTAINERD_VERSION)
	CGO_ENABLED=0 $(GOINSTALL) -trimpath -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$(CONTAINERD_VERSION)" -tags "no_btrfs no_zfs no_devmapper" github.com/containerd/containerd/v2/cmd/containerd@$(CONTAINERD_VERSION)
	CGO_ENABLED=0 $(GOINSTALL) -trimpath -ldflags "-s -w" $(addprefix github.com/containernetworking/plugins/,$(addsuffix @$(CNI_PLUGINS_VERSION),$(CNI_PLUGINS)))
	CGO_ENABLED=0 $(GOINSTALL) -trimpath -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$(CRI_TOOLS_VERSION)" sigs.k8s.io/cri-tools/cmd/crictl@$(CRI_TOOLS_VERSION)
	$(NODEBIN_COPY)
	CGO_ENABLED=0 $(GOTARGET) $(GO) build -trimpath -ldflags "-s -w" -o $(NODEBIN)/pause ./cmd/pause
	find $(NODEBIN_EMBED) -type f ! -name README.md ! -name helpers.tar.zst -delete
	$(GO) run ./cmd/k1s-pack helpers -o $(NODEBIN_EMBED)/helpers.tar.zst -dir $(NODEBIN) $(NODEBIN_NAMES)

# Air-gap bundle of the add-on images the manifests/ use (CoreDNS and
# k1s's ingress controller), built from Go sources at pinned versions
# since nothing can be pulled. CoreDNS is cmd/k1s-coredns, a module of its
# own (upstream's main with fewer plugins; its go.mod pins the version);
# like the ingress controller it is handed to go, whose cache decides; the
# bundle is rewritten only when an input changed, so a second `make images`
# is quick.
# COREDNS_VERSION must equal the tag in manifests/coredns.yaml.
COREDNS_VERSION := $(shell awk '$$1 == "github.com/coredns/coredns" {print $$2}' cmd/k1s-coredns/go.mod)
# METRICS_SERVER_VERSION must equal server.MetricsServerImageTag.
METRICS_SERVER_VERSION := v0.8.0
# INGRESS_TAG must equal server.IngressImageTag (internal/server/addons.go).
INGRESS_TAG     := v0.1.0
# LOCAL_PATH_TAG must equal server.LocalPathHelperTag (internal/server/addons.go).
LOCAL_PATH_TAG  := v0.1.0
# HELM_CONTROLLER_TAG must equal server.HelmControllerTag (internal/server/addons.go).
HELM_CONTROLLER_TAG := v0.1.0
# DASHBOARD_TAG must equal server.DashboardImageTag (internal/server/addons.go).
DASHBOARD_TAG   := v0.1.0
IMAGES_DIR      := bin/images/$(ARCH)
AIRGAP_BUNDLE   := bin/k1s-airgap-images-$(ARCH).tar.zst
COREDNS_BIN     := $(IMAGES_DIR)/k1s-coredns
INGRESS_BIN     := $(IMAGES_DIR)/k1s-ingress
METRICS_SERVER_BIN := $(IMAGES_DIR)/metrics-server-$(METRICS_SERVER_VERSION)
LOCAL_PATH_BIN  := $(IMAGES_DIR)/k1s-local-path
HELM_CONTROLLER_BIN := $(IMAGES_DIR)/k1s-helm-controller
DASHBOARD_BIN   := $(IMAGES_DIR)/k1s-dashboard
BUNDLE_SRCS     := $(filter-out %_test.go,$(wildcard internal/imagebuild/*.go cmd/airgap-bundle/*.go internal/atomicfile/*.go))

images: $(AIRGAP_BUNDLE)

$(COREDNS_BIN): FORCE
	cd cmd/k1s-coredns && CGO_ENABLED=0 $(GOTARGET) $(GO) build -trimpath -buildvcs=false -ldflags "-s -w" -o $(CURDIR)/$@.new .
	if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; fi

$(METRICS_SERVER_BIN):
	rm -rf $@.gopath
	GOPATH=$(CURDIR)/$@.gopath CGO_ENABLED=0 $(XGOINSTALL) -trimpath -ldflags "-s -w" sigs.k8s.io/metrics-server/cmd/metrics-server@$(METRICS_SERVER_VERSION)
	mv $@.gopath/bin$(XGOBIN)/metrics-server $@ && rm -rf $@.gopath

$(INGRESS_BIN): FORCE
	CGO_ENABLED=0 $(GOTARGET) $(GO) build -trimpath -ldflags "-s -w" -o $@.new ./cmd/k1s-ingress
	if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; fi

$(LOCAL_PATH_BIN): FORCE
	CGO_ENABLED=0 $(GOTARGET) $(GO) build -trimpath -ldflags "-s -w" -o $@.new ./cmd/k1s-local-path
	if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; fi

# Helm's SDK lives only in this binary, never in bin/k1s (see internal/helmctl).
$(HELM_CONTROLLER_BIN): FORCE
	CGO_ENABLED=0 $(GOTARGET) $(GO) build -trimpath -ldflags "-s -w" -o $@.new ./cmd/k1s-helm-controller
	if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; fi

$(DASHBOARD_BIN): FORCE
	CGO_ENABLED=0 $(GOTARGET) $(GO) build -trimpath -ldflags "-s -w" -o $@.new ./cmd/k1s-dashboard
	if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; fi

$(AIRGAP_BUNDLE): $(COREDNS_BIN) $(INGRESS_BIN) $(METRICS_SERVER_BIN) $(LOCAL_PATH_BIN) $(HELM_CONTROLLER_BIN) $(DASHBOARD_BIN) $(BUNDLE_SRCS) go.mod
	$(GO) run ./cmd/airgap-bundle -o $@ -arch $(ARCH) \
		-coredns $(COREDNS_BIN) -coredns-ref docker.io/k1s-io/coredns:$(COREDNS_VERSION) \
		-ingress $(INGRESS_BIN) -ingress-ref docker.io/k1s-io/ingress:$(INGRESS_TAG) \
		-metrics-server $(METRICS_SERVER_BIN) -metrics-server-ref docker.io/k1s-io/metrics-server:$(METRICS_SERVER_VERSION) \
		-local-path $(LOCAL_PATH_BIN) -local-path-ref docker.io/k1s-io/local-path-helper:$(LOCAL_PATH_TAG) \
		-helm-controller $(HELM_CONTROLLER_BIN) -helm-controller-ref docker.io/k1s-io/helm-controller:$(HELM_CONTROLLER_TAG) \
		-dashboard $(DASHBOARD_BIN) -dashboard-ref docker.io/k1s-io/dashboard:$(DASHBOARD_TAG)

# Release: dist/ holds, per architecture, the k1s executable (k1s for
# amd64, k1s-<arch> otherwise), its air-gap bundle, sha256sum-<arch>.txt
# (which also lists k1s-killall.sh, the same for every architecture: install.sh
# checks it too) and install.sh. The executables are linked statically (glibc, SQLite;
# runc embeds libseccomp), so one file runs on Debian, Raspberry Pi OS,
# Ubuntu of any glibc version and musl systems alike, and under
# qemu-user without a loader; netgo and osusergo keep Go from calling
# glibc's NSS, which a static binary cannot load. Reproducible: -trimpath,
# VERSION and BUILD_DATE from git, bundles with fixed timestamps and a
# single-threaded zstd encoder; `make release-check` proves it.
RELEASE_ARCHES := amd64 arm64
DIST           := dist
RELEASE_TAGS   := $(TAGS) netgo osusergo sqlite_omit_load_extension
release_exe     = k1s$(if $(filter-out amd64,$(1)),-$(1))

.PHONY: release release-check $(addprefix release-,$(RELEASE_ARCHES))
release: $(addprefix release-,$(RELEASE_ARCHES))
	cp scripts/install.sh $(DIST)/install.sh

$(addprefix release-,$(RELEASE_ARCHES)): release-%:
	$(MAKE) --no-print-directory ARCH=$* nodebin images
	mkdir -p $(DIST)
	$(MAKE) --no-print-directory ARCH=$* release-exe OUT=$(DIST)/$(call release_exe,$*)
	cp bin/k1s-airgap-images-$*.tar.zst $(DIST)/
	cp scripts/k1s-killall.sh $(DIST)/
	cd $(DIST) && sha256sum $(call release_exe,$*) k1s-airgap-images-$*.tar.zst k1s-killall.sh > sha256sum-$*.txt

# The release executable is cmd/k1s-launcher (static, no cgo) with the
# real k1s appended, zstd-compressed (internal/selfextract); the launcher
# unpacks it once per version under the data dir and execs it.
.PHONY: release-exe
release-exe:
	mkdir -p bin/release/$(ARCH)
	$(GOTARGET) $(GO) build -trimpath -tags "$(RELEASE_TAGS)" -ldflags "$(LDFLAGS) $(STATIC_LDFLAGS)" -o bin/release/$(ARCH)/k1s .
	CGO_ENABLED=0 $(GOTARGET) $(GO) build -trimpath -ldflags "-s -w" -o bin/release/$(ARCH)/k1s-launcher ./cmd/k1s-launcher
	$(GO) run ./cmd/k1s-pack release -launcher bin/release/$(ARCH)/k1s-launcher -payload bin/release/$(ARCH)/k1s -o $(OUT)

# Builds dist/ twice, the second time after deleting every file the first
# wrote (node binaries, images, bundles, dist/; Go's build cache stays),
# and requires the same bytes.
release-check:
	$(MAKE) --no-print-directory release
	cd $(DIST) && sha256sum * > $(CURDIR)/bin/release-first.sha256
	rm -rf $(DIST) bin/images bin/k1s-airgap-images-*.tar.zst bin/gopath bin/nodebin bin/release
	find internal/nodebin/bin -mindepth 2 -type f ! -name README.md -delete
	$(MAKE) --no-print-directory release
	cd $(DIST) && sha256sum -c --strict $(CURDIR)/bin/release-first.sha256
	@echo "release-check: two builds of dist/ are byte for byte the same"

# Installs what a fresh Debian machine lacks (needs root).
deps:
	bash scripts/install-deps.sh

# Adds the cross toolchains and qemu that `make release` and its tests need.
release-deps:
	bash scripts/install-deps.sh --release

# The bundle is linked into the default air-gap folder, as an offline user would.
run: deps build images
	mkdir -p /var/lib/k1s/agent/images
	ln -sf $(CURDIR)/$(AIRGAP_BUNDLE) /var/lib/k1s/agent/images/
	./bin/k1s server

# Same -trimpath and tags as bin/k1s: the test binaries then reuse the
# Kubernetes packages the build compiled (on a cold machine a second
# compile of Kubernetes would cost ~15 minutes).
unit:
	$(GO) test -count=1 -trimpath -tags "$(TAGS)" ./internal/... ./cmd/... ./manifests/...

# End-to-end tests start the real binary; K1S_BIN points them at it.
# tests/release is not among them: `make test-all` runs it. E2E_ALL_ONLY
# are left to `make test-all` to keep a cold CI run under an hour: they
# exercise upstream Kubernetes features (init containers, probes, Jobs, HPA,
# rollouts, pull secrets, metrics-server's API) more than k1s's own code, or
# repeat what the core set covers on another path (flannel host-gw beside
# TestClusterNetworking's vxlan; a containerd left by a killed k1s), or are
# add-ons whose logic unit tests cover (local-path's planner, helmctl).
E2E_PKGS = $(filter-out %/tests/release,$(shell $(GO) list ./tests/...))
E2E_ALL_ONLY := ^(TestWorkloads|TestHorizontalPodAutoscaler|TestMultiNode|TestContainerdLeftoverIsReplaced|TestImagePullSecrets|TestMetricsServer|TestLocalStorage|TestHelmChart|TestNetworkPolicy|TestHAExternalDatastore|TestHAEmbeddedEtcd|TestHAEtcdMemberRemoval|TestEmbeddedEtcdSnapshot|TestClusterHA|TestHABundleUpdates)$$
E2E_GO_TEST = K1S_BIN=$(CURDIR)/bin/k1s $(GO) test -count=1 -trimpath -tags "$(TAGS)" -timeout 45m -v
e2e: build images
	$(E2E_GO_TEST) -skip '$(E2E_ALL_ONLY)' $(E2E_PKGS)
e2e-all: build images
	$(E2E_GO_TEST) $(E2E_PKGS)

# Dead-code elimination: links k1s as `make build` does (after it, so the
# embedded helpers exist) with the linker's dependency dump, and fails when
# a function that looks methods up by a computed name (which turns off the
# pruning of unused methods for the whole binary) is reachable and not in
# scripts/dce-allowlist.txt, or a listed one no longer is, or when package
# plugin is imported (cmd/dcecheck).
DCE_ALLOW := scripts/dce-allowlist.txt
dce-check: build
	$(GOTARGET) $(GO) list -deps -tags "$(TAGS)" -f '{{.ImportPath}}{{range .Imports}} {{.}}{{end}}' . > bin/dce-imports.txt
	$(GOTARGET) $(GO) build -trimpath -tags "$(TAGS)" -ldflags "$(LDFLAGS) -dumpdep" -o /dev/null . 2>&1 | \
		$(GO) run ./cmd/dcecheck -allow $(DCE_ALLOW) -imports bin/dce-imports.txt

test: deps build images unit dce-check e2e

# Every test: the unit and end-to-end tests, E2E_ALL_ONLY included, then
# the release: dist/ built twice (release-check) and the arm64 executable
# run under qemu (tests/release). In the recipe rather than as
# prerequisites, so that `make -j` never builds the release while the e2e
# tests run.
test-all: deps build images unit dce-check e2e-all
	bash scripts/install-deps.sh --release
	$(MAKE) --no-print-directory release-check
	K1S_DIST=$(CURDIR)/$(DIST) $(GO) test -count=1 -timeout 30m -v ./tests/release/...

# The network, datastore and release benchmarks append their sections to
# the report the first one writes.
bench: build images
	$(GO) run ./tests/bench -bin $(CURDIR)/bin/k1s -out docs/benchmarks.md
	cd tests && K1S_BIN=$(CURDIR)/bin/k1s K1S_BENCH_REPORT=$(CURDIR)/docs/benchmarks.md \
		$(GO) test -count=1 -run '^$$' -bench 'BenchmarkNetwork|BenchmarkDatastoreChurn|BenchmarkHundredPods|BenchmarkAddonCost|BenchmarkNodeIdle|BenchmarkDatastoreWrites' -benchtime 1x -timeout 60m .
	$(MAKE) --no-print-directory release-amd64
	K1S_BENCH_REPORT=$(CURDIR)/docs/benchmarks.md $(MAKE) --no-print-directory bench-release

# Size of dist/k1s (what install.sh downloads) and its first and second
# start (unpack, then exec); appended to the report when K1S_BENCH_REPORT
# is set (make bench sets it).
bench-release:
	K1S_DIST=$(CURDIR)/$(DIST) $(GO) test -count=1 -trimpath -tags "$(TAGS)" -run '^$$' -bench BenchmarkRelease -benchtime 1x -v ./tests/release

clean:
	rm -rf bin $(DIST)
