package imagebuild

import (
	"archive/tar"
	"bytes"
	"io"
	"runtime"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestWriteRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	files := []File{{Name: "bin/", Mode: 0o755}, {Name: "bin/tool", Mode: 0o755, Data: []byte("#!payload")}, {Name: "bin/alias", Mode: 0o777, Link: "tool"}}
	if err := Write(&buf, "example.org/t/img:v1", files, v1.Config{Cmd: []string{"/bin/tool"}}); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	tag, _ := name.NewTag("example.org/t/img:v1")
	img, err := tarball.Image(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }, &tag)
	if err != nil {
		t.Fatalf("reading back: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH || !slices.Equal(cf.Config.Cmd, []string{"/bin/tool"}) {
		t.Fatalf("config: os=%s arch=%s cmd=%v", cf.OS, cf.Architecture, cf.Config.Cmd)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	got := map[string]*tar.Header{}
	var content string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h
		if h.Name == "bin/tool" {
			b, _ := io.ReadAll(tr)
			content = string(b)
		}
	}
	if h := got["bin/"]; h == nil || h.Typeflag != tar.TypeDir {
		t.Errorf("bin/ is not a directory: %+v", h)
	}
	if content != "#!payload" || got["bin/tool"].Mode != 0o755 {
		t.Errorf("bin/tool: %q mode %o", content, got["bin/tool"].Mode)
	}
	if h := got["bin/alias"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "tool" {
		t.Errorf("bin/alias: %+v", h)
	}
}
