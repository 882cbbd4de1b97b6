// Package imagebuild makes single-layer container images from a few files,
// as image tarballs containerd imports. k1s builds its sandbox image with
// it; the tests build theirs; `make images` builds the air-gap bundle of
// the add-on images (WriteBundle, run by cmd/airgap-bundle).
package imagebuild

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// File is one entry of the layer: a directory (Name ends in /), a symlink
// (Link set) or a regular file whose content is Data or, when Path is set,
// the host file at Path (read when the layer is written, never held in
// memory whole).
type File struct {
	Name string
	Mode int64
	Data []byte
	Link string
	Path string
}

// Write writes an image tarball of ref with files as its only layer and
// config as its run configuration, for this machine's platform.
func Write(w io.Writer, ref string, files []File, config v1.Config) error {
	var layer bytes.Buffer
	if err := writeLayer(&layer, files); err != nil {
		return err
	}
	data := layer.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config = config
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	return tarball.Write(tag, img, w)
}

// writeLayer writes files, in the order given, as a tar stream with zero
// timestamps and root ownership.
func writeLayer(w io.Writer, files []File) error {
	tw := tar.NewWriter(w)
	for _, f := range files {
		h := &tar.Header{Name: f.Name, Mode: f.Mode, Typeflag: tar.TypeReg, Size: int64(len(f.Data))}
		var src *os.File
		switch {
		case f.Link != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, f.Link, 0
		case len(f.Name) > 0 && f.Name[len(f.Name)-1] == '/':
			h.Typeflag, h.Size = tar.TypeDir, 0
		case f.Path != "":
			var err error
			if src, err = os.Open(f.Path); err != nil {
				return err
			}
			fi, err := src.Stat()
			if err != nil {
				src.Close()
				return err
			}
			h.Size = fi.Size()
		}
		if err := tw.WriteHeader(h); err != nil {
			if src != nil {
				src.Close()
			}
			return err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if src == nil {
			if _, err := tw.Write(f.Data); err != nil {
				return err
			}
			continue
		}
		n, err := io.Copy(tw, src)
		src.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
		if n != h.Size {
			return fmt.Errorf("%s changed while being read", f.Path)
		}
	}
	return tw.Close()
}
