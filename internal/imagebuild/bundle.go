package imagebuild

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/k1s-io/k1s/internal/digest"
)

// Image is one image of a bundle: Files make its only layer, Config its run
// configuration.
type Image struct {
	// Ref is the tag containerd lists the image under, e.g.
	// docker.io/k1s-io/coredns:v1.15.0.
	Ref    string
	Files  []File
	Config v1.Config
	// Architecture is the GOARCH the image is for; "" means this machine's.
	// The OS is always linux.
	Architecture string
}

// WriteBundle writes images into one image tarball in the layout of
// `docker save` (manifest.json, a config blob and an uncompressed layer per
// image), which containerd and go-containerregistry's tarball package
// import. The output depends on the inputs only: images in the order
// given, layer entries sorted by name with their missing parent
// directories added, Unix-epoch timestamps, root ownership. Layers are
// stored uncompressed; compress the whole tarball instead. Host files
// (File.Path) are streamed, twice: once to hash the layer, once to write
// it.
func WriteBundle(w io.Writer, images []Image) error {
	tw := tar.NewWriter(w)
	var manifest tarball.Manifest
	written := map[string]bool{}
	refs := map[string]bool{}
	for _, img := range images {
		tag, err := name.NewTag(img.Ref, name.StrictValidation)
		if err != nil {
			return fmt.Errorf("image %q: %w", img.Ref, err)
		}
		if refs[tag.Name()] {
			return fmt.Errorf("image %q: listed twice", img.Ref)
		}
		refs[tag.Name()] = true
		files, err := layerFiles(img.Files)
		if err != nil {
			return fmt.Errorf("image %s: %w", img.Ref, err)
		}
		h := sha256.New()
		cw := &digest.Counter{W: h}
		if err := writeLayer(cw, files); err != nil {
			return fmt.Errorf("image %s: %w", img.Ref, err)
		}
		diffID := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
		arch := img.Architecture
		if arch == "" {
			arch = runtime.GOARCH
		}
		cfg, err := json.Marshal(v1.ConfigFile{
			Created:      v1.Time{Time: time.Unix(0, 0).UTC()},
			Architecture: arch,
			OS:           "linux",
			Config:       img.Config,
			RootFS:       v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{diffID}},
		})
		if err != nil {
			return err
		}
		cfgSum := sha256.Sum256(cfg)
		cfgName := hex.EncodeToString(cfgSum[:]) + ".json"
		layerName := diffID.Hex + ".tar"
		manifest = append(manifest, tarball.Descriptor{Config: cfgName, RepoTags: []string{img.Ref}, Layers: []string{layerName}})
		if !written[cfgName] {
			if err := writeEntry(tw, cfgName, int64(len(cfg)), func(w io.Writer) error { _, err := w.Write(cfg); return err }); err != nil {
				return err
			}
			written[cfgName] = true
		}
		if written[layerName] {
			continue
		}
		// The second pass hashes again: a host file that changed between the
		// passes would make the layer disagree with its diff ID.
		h2 := sha256.New()
		err = writeEntry(tw, layerName, cw.N, func(w io.Writer) error { return writeLayer(io.MultiWriter(w, h2), files) })
		if err != nil {
			return fmt.Errorf("image %s: %w", img.Ref, err)
		}
		if hex.EncodeToString(h2.Sum(nil)) != diffID.Hex {
			return fmt.Errorf("image %s: a file changed while the layer was written", img.Ref)
		}
		written[layerName] = true
	}
	m, err := json.Marshal(manifest)
	if err != nil {
		return err
	}
	if err := writeEntry(tw, "manifest.json", int64(len(m)), func(w io.Writer) error { _, err := io.Copy(w, bytes.NewReader(m)); return err }); err != nil {
		return err
	}
	return tw.Close()
}

// layerFiles returns files sorted by name, with the parent directories
// that files lack added (mode 0755), refusing duplicate and absolute names.
func layerFiles(files []File) ([]File, error) {
	byName := map[string]bool{}
	var out []File
	for _, f := range files {
		if f.Name == "" || strings.HasPrefix(f.Name, "/") || strings.Contains("/"+f.Name, "/../") {
			return nil, fmt.Errorf("bad layer entry name %q", f.Name)
		}
		if byName[f.Name] {
			return nil, fmt.Errorf("layer entry %q listed twice", f.Name)
		}
		byName[f.Name] = true
		out = append(out, f)
	}
	for _, f := range files {
		for dir := path.Dir(strings.TrimSuffix(f.Name, "/")); dir != "." && dir != "/"; dir = path.Dir(dir) {
			if !byName[dir+"/"] {
				byName[dir+"/"] = true
				out = append(out, File{Name: dir + "/", Mode: 0o755})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// writeEntry writes one regular file of size bytes to tw, its content
// from write.
func writeEntry(tw *tar.Writer, name string, size int64, write func(io.Writer) error) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg, Size: size}); err != nil {
		return err
	}
	return write(tw)
}
