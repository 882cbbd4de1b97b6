package imagebuild

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/zstd"
)

var time0 = time.Unix(0, 0)

func testBundle(hostFile string) []Image {
	return []Image{
		{
			Ref:          "docker.io/example/one:1.0.0",
			Files:        []File{{Name: "etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0::/:/bin/false\n")}, {Name: "one", Mode: 0o755, Path: hostFile}, {Name: "tmp/", Mode: 0o1777}},
			Config:       v1.Config{Entrypoint: []string{"/one"}, ExposedPorts: map[string]struct{}{"53/udp": {}}},
			Architecture: "amd64",
		},
		{
			Ref:          "docker.io/library/two:v2",
			Files:        []File{{Name: "usr/local/bin/two", Mode: 0o755, Data: []byte("two-binary")}},
			Config:       v1.Config{Entrypoint: []string{"/usr/local/bin/two"}},
			Architecture: "amd64",
		},
	}
}

func writeZstdBundle(t *testing.T, images []Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteBundle(zw, images); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestWriteBundleRoundTrip(t *testing.T) {
	hostFile := filepath.Join(t.TempDir(), "one")
	payload := bytes.Repeat([]byte("streamed from disk\n"), 10000)
	if err := os.WriteFile(hostFile, payload, 0o600); err != nil {
		t.Fatal(err)
	}
	compressed := writeZstdBundle(t, testBundle(hostFile))
	if again := writeZstdBundle(t, testBundle(hostFile)); !bytes.Equal(compressed, again) {
		t.Fatal("two writes of the same bundle differ")
	}
	opener := func() (io.ReadCloser, error) {
		zr, err := zstd.NewReader(bytes.NewReader(compressed))
		if err != nil {
			return nil, err
		}
		return zr.IOReadCloser(), nil
	}

	rc, _ := opener()
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return rc, nil })
	if err != nil {
		t.Fatal(err)
	}
	var tags [][]string
	for _, d := range m {
		tags = append(tags, d.RepoTags)
	}
	if want := [][]string{{"docker.io/example/one:1.0.0"}, {"docker.io/library/two:v2"}}; !slices.EqualFunc(tags, want, slices.Equal) {
		t.Fatalf("repo tags %v, want %v", tags, want)
	}

	for _, tc := range []struct {
		ref, entry, file string
		want             []byte
		names            []string
	}{
		{"docker.io/example/one:1.0.0", "/one", "one", payload, []string{"etc/", "etc/passwd", "one", "tmp/"}},
		{"two:v2", "/usr/local/bin/two", "usr/local/bin/two", []byte("two-binary"), []string{"usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/two"}},
	} {
		tag, err := name.NewTag(tc.ref)
		if err != nil {
			t.Fatal(err)
		}
		img, err := tarball.Image(opener, &tag)
		if err != nil {
			t.Fatalf("%s: %v", tc.ref, err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if !cf.Created.Time.Equal(time0) {
			t.Errorf("%s: created %v", tc.ref, cf.Created)
		}
		if cf.OS != "linux" || cf.Architecture != "amd64" || !slices.Equal(cf.Config.Entrypoint, []string{tc.entry}) {
			t.Errorf("%s: os=%s arch=%s entrypoint=%v", tc.ref, cf.OS, cf.Architecture, cf.Config.Entrypoint)
		}
		layers, err := img.Layers()
		if err != nil || len(layers) != 1 {
			t.Fatalf("%s: %d layers, %v", tc.ref, len(layers), err)
		}
		diffID, err := layers[0].DiffID()
		if err != nil || len(cf.RootFS.DiffIDs) != 1 || cf.RootFS.DiffIDs[0] != diffID {
			t.Errorf("%s: diff ID %v in config, layer has %v (%v)", tc.ref, cf.RootFS.DiffIDs, diffID, err)
		}
		lr, err := layers[0].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		var content []byte
		tr := tar.NewReader(lr)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if !h.ModTime.Equal(time0) || h.Uid != 0 || h.Gid != 0 {
				t.Errorf("%s: %s: mtime %v uid %d gid %d", tc.ref, h.Name, h.ModTime, h.Uid, h.Gid)
			}
			names = append(names, h.Name)
			if h.Name == tc.file {
				if content, err = io.ReadAll(tr); err != nil {
					t.Fatal(err)
				}
				if h.Mode != 0o755 {
					t.Errorf("%s: mode %o", h.Name, h.Mode)
				}
			}
		}
		lr.Close()
		if !slices.Equal(names, tc.names) {
			t.Errorf("%s: layer entries %v, want %v", tc.ref, names, tc.names)
		}
		if !bytes.Equal(content, tc.want) {
			t.Errorf("%s: %s has %d bytes, want %d", tc.ref, tc.file, len(content), len(tc.want))
		}
	}
}

func TestWriteBundleRejects(t *testing.T) {
	for _, images := range [][]Image{
		{{Ref: "example/untagged@sha256:" + string(bytes.Repeat([]byte("a"), 64))}},
		{{Ref: "example/a:1"}, {Ref: "docker.io/example/a:1"}},
		{{Ref: "example/a:1", Files: []File{{Name: "/abs"}}}},
		{{Ref: "example/a:1", Files: []File{{Name: "x"}, {Name: "x"}}}},
		{{Ref: "example/a:1", Files: []File{{Name: "x", Path: "/nonexistent/k1s-test"}}}},
	} {
		if err := WriteBundle(io.Discard, images); err == nil {
			b, _ := json.Marshal(images)
			t.Errorf("WriteBundle(%s) did not fail", b)
		}
	}
}
