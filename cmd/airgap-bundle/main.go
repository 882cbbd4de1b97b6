// Command airgap-bundle writes k1s's air-gap image bundle: the add-on images
// (CoreDNS, k1s's ingress controller, metrics-server, the local-path helper,
// the helm-controller, k1s-dashboard) built from binaries `make images` compiled, as one
// zstd-compressed image tarball that k1s imports into containerd from
// <data-dir>/agent/images/.
//
//	go run ./cmd/airgap-bundle -o bin/k1s-airgap-images-amd64.tar.zst \
//	    -coredns bin/images/amd64/k1s-coredns -coredns-ref docker.io/k1s-io/coredns:v1.15.0 \
//	    -ingress bin/images/amd64/k1s-ingress -ingress-ref docker.io/k1s-io/ingress:v0.1.0 \
//	    -metrics-server bin/images/amd64/metrics-server-v0.8.0 -metrics-server-ref docker.io/k1s-io/metrics-server:v0.8.0 \
//	    -local-path bin/images/amd64/k1s-local-path -local-path-ref docker.io/k1s-io/local-path-helper:v0.1.0 \
//	    -helm-controller bin/images/amd64/k1s-helm-controller -helm-controller-ref docker.io/k1s-io/helm-controller:v0.1.0 \
//	    -dashboard bin/images/amd64/k1s-dashboard -dashboard-ref docker.io/k1s-io/dashboard:v0.1.0
//
// The output is the same for the same inputs. It is written through package
// atomicfile, so an interrupted run leaves the old bundle, never half a new one.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/zstd"

	"github.com/k1s-io/k1s/internal/atomicfile"
	"github.com/k1s-io/k1s/internal/imagebuild"
)

const envPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Users and groups of a distroless-like base: root, nonroot (65532, what
// the manifests run as where they can) and nobody.
const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
	group = "root:x:0:\n" +
		"nonroot:x:65532:\n" +
		"nobody:x:65534:\n"
	// Go's resolver reads it to look in /etc/hosts before asking DNS.
	nsswitch = "hosts: files dns\n"
)

func main() {
	out := flag.String("o", "bin/k1s-airgap-images-amd64.tar.zst", "bundle to write")
	arch := flag.String("arch", "amd64", "GOARCH the binaries are built for")
	coredns := flag.String("coredns", "", "CoreDNS binary")
	corednsRef := flag.String("coredns-ref", "docker.io/k1s-io/coredns:v1.15.0", "CoreDNS image tag")
	ingress := flag.String("ingress", "", "k1s-ingress binary")
	ingressRef := flag.String("ingress-ref", "", "ingress controller image tag, e.g. docker.io/k1s-io/ingress:v0.1.0")
	metricsServer := flag.String("metrics-server", "", "metrics-server binary")
	metricsServerRef := flag.String("metrics-server-ref", "", "metrics-server image tag, e.g. docker.io/k1s-io/metrics-server:v0.8.0")
	localPath := flag.String("local-path", "", "k1s-local-path binary (the local-path storage helper)")
	localPathRef := flag.String("local-path-ref", "", "local-path helper image tag, e.g. docker.io/k1s-io/local-path-helper:v0.1.0")
	helmController := flag.String("helm-controller", "", "k1s-helm-controller binary")
	helmControllerRef := flag.String("helm-controller-ref", "", "helm-controller image tag, e.g. docker.io/k1s-io/helm-controller:v0.1.0")
	dashboard := flag.String("dashboard", "", "k1s-dashboard binary")
	dashboardRef := flag.String("dashboard-ref", "", "dashboard image tag, e.g. docker.io/k1s-io/dashboard:v0.1.0")
	caBundle := flag.String("ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "CA certificates copied into the images when the file exists")
	flag.Parse()
	if *coredns == "" || *ingress == "" || *ingressRef == "" || *metricsServer == "" || *metricsServerRef == "" ||
		*localPath == "" || *localPathRef == "" || *helmController == "" || *helmControllerRef == "" ||
		*dashboard == "" || *dashboardRef == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	for _, p := range []string{*coredns, *ingress, *metricsServer, *localPath, *helmController, *dashboard} {
		if _, err := os.Stat(p); err != nil {
			log.Fatal(err)
		}
	}
	base := []imagebuild.File{
		{Name: "etc/passwd", Mode: 0o644, Data: []byte(passwd)},
		{Name: "etc/group", Mode: 0o644, Data: []byte(group)},
		{Name: "etc/nsswitch.conf", Mode: 0o644, Data: []byte(nsswitch)},
		{Name: "tmp/", Mode: 0o1777},
	}
	switch _, err := os.Stat(*caBundle); {
	case err == nil:
		base = append(base, imagebuild.File{Name: "etc/ssl/certs/ca-certificates.crt", Mode: 0o644, Path: *caBundle})
	case errors.Is(err, fs.ErrNotExist):
		log.Printf("%s not found: images have no CA certificates", *caBundle)
	default:
		log.Fatal(err)
	}
	images := []imagebuild.Image{
		{
			Ref:   *corednsRef,
			Files: append(clone(base), imagebuild.File{Name: "coredns", Mode: 0o755, Path: *coredns}),
			Config: v1.Config{
				Entrypoint:   []string{"/coredns"},
				Env:          []string{envPath},
				ExposedPorts: map[string]struct{}{"53/tcp": {}, "53/udp": {}},
			},
			Architecture: *arch,
		},
		{
			Ref:   *ingressRef,
			Files: append(clone(base), imagebuild.File{Name: "k1s-ingress", Mode: 0o755, Path: *ingress}),
			Config: v1.Config{
				Entrypoint:   []string{"/k1s-ingress"},
				Env:          []string{envPath},
				ExposedPorts: map[string]struct{}{"8000/tcp": {}, "8443/tcp": {}},
				User:         "65532:65532",
			},
			Architecture: *arch,
		},
		{
			Ref:   *metricsServerRef,
			Files: append(clone(base), imagebuild.File{Name: "metrics-server", Mode: 0o755, Path: *metricsServer}),
			Config: v1.Config{
				Entrypoint:   []string{"/metrics-server"},
				Env:          []string{envPath},
				ExposedPorts: map[string]struct{}{"10250/tcp": {}},
				User:         "65532:65532",
			},
			Architecture: *arch,
		},
		{
			// Only the binary: it runs as root (it makes directories in a
			// root-owned folder) and needs no users, certificates or shell.
			Ref:   *localPathRef,
			Files: []imagebuild.File{{Name: "k1s-local-path", Mode: 0o755, Path: *localPath}},
			Config: v1.Config{
				Entrypoint: []string{"/k1s-local-path"},
				Env:        []string{envPath},
			},
			Architecture: *arch,
		},
		{
			// CA certificates: it fetches charts from https repositories.
			Ref:   *helmControllerRef,
			Files: append(clone(base), imagebuild.File{Name: "k1s-helm-controller", Mode: 0o755, Path: *helmController}),
			Config: v1.Config{
				Entrypoint: []string{"/k1s-helm-controller"},
				Env:        []string{envPath},
				User:       "65532:65532",
			},
			Architecture: *arch,
		},
		{
			// Users, CA certificates and /tmp like the others; it needs no shell.
			Ref:   *dashboardRef,
			Files: append(clone(base), imagebuild.File{Name: "k1s-dashboard", Mode: 0o755, Path: *dashboard}),
			Config: v1.Config{
				Entrypoint:   []string{"/k1s-dashboard"},
				Env:          []string{envPath},
				ExposedPorts: map[string]struct{}{"8443/tcp": {}},
				User:         "65532:65532",
			},
			Architecture: *arch,
		},
	}
	if err := write(*out, images); err != nil {
		log.Fatal(err)
	}
	fi, err := os.Stat(*out)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("wrote %s (%d bytes): %s, %s, %s, %s, %s, %s\n", *out, fi.Size(), *corednsRef, *ingressRef, *metricsServerRef, *localPathRef, *helmControllerRef, *dashboardRef)
}

func clone(files []imagebuild.File) []imagebuild.File {
	return append([]imagebuild.File(nil), files...)
}

func write(out string, images []imagebuild.Image) error {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFrom(out, 0o644, func(w io.Writer) error {
		// One encoder goroutine keeps the output byte-for-byte reproducible.
		zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
		if err != nil {
			return err
		}
		if err := imagebuild.WriteBundle(zw, images); err != nil {
			zw.Close()
			return err
		}
		return zw.Close()
	})
}
