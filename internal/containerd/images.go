package containerd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	ctrd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/archive/compression"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/sirupsen/logrus"

	"github.com/k1s-io/k1s/internal/atomicfile"
	"github.com/k1s-io/k1s/internal/digest"
)

// Snapshotter is the one k1s configures for the CRI.
const Snapshotter = "overlayfs"

// ImportResult counts what ImportDir did.
type ImportResult struct {
	Imported, Skipped, Failed []string
}

// IsImageTarball reports whether name is an air-gap tarball k1s imports.
func IsImageTarball(name string) bool {
	for _, ext := range []string{".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.zstd"} {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

// ImportDir imports every image tarball in dir into the Kubernetes
// namespace and unpacks it, so Pods start without a registry. A tarball
// whose content hash was imported before, and whose images are still
// there, is skipped. A tarball that fails is reported by name and skipped.
func ImportDir(ctx context.Context, socket, dir, recordPath string, log logrus.FieldLogger) (ImportResult, error) {
	var res ImportResult
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return res, nil
	}
	if err != nil {
		return res, err
	}
	var files []string
	for _, e := range entries {
		if !IsImageTarball(e.Name()) {
			continue
		}
		// A symlink to a tarball elsewhere (e.g. k1s's bundle) counts too.
		if fi, err := os.Stat(filepath.Join(dir, e.Name())); err == nil && fi.Mode().IsRegular() {
			files = append(files, e.Name())
		}
	}
	sort.Strings(files)
	if len(files) == 0 {
		return res, nil
	}
	cl, err := ctrd.New(socket, ctrd.WithDefaultNamespace(Namespace), ctrd.WithTimeout(5*time.Second))
	if err != nil {
		return res, err
	}
	defer cl.Close()
	ctx = namespaces.WithNamespace(ctx, Namespace)
	record := loadRecord(recordPath)
	for _, name := range files {
		path := filepath.Join(dir, name)
		d, _, err := digest.File(path)
		sum := d.Hex()
		if err != nil {
			log.Errorf("image tarball %s: %v (skipped)", path, err)
			res.Failed = append(res.Failed, name)
			continue
		}
		if refs, ok := record[sum]; ok && imagesPresent(ctx, cl, refs) {
			log.Debugf("image tarball %s already imported", name)
			res.Skipped = append(res.Skipped, name)
			continue
		}
		start := time.Now()
		refs, err := importFile(ctx, cl, path)
		if err != nil {
			log.Errorf("image tarball %s could not be imported: %v (skipped; replace the file to retry)", path, err)
			res.Failed = append(res.Failed, name)
			continue
		}
		log.Infof("imported %s from %s in %s", strings.Join(refs, ", "), name, time.Since(start).Round(time.Millisecond))
		record[sum] = refs
		res.Imported = append(res.Imported, name)
	}
	if len(res.Imported) > 0 {
		if err := saveRecord(recordPath, record); err != nil {
			log.Warnf("could not record imported images: %v", err)
		}
	}
	return res, nil
}

func importFile(ctx context.Context, cl *ctrd.Client, path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return importReader(ctx, cl, f)
}

// EnsureImage imports the tarball that build returns unless ref is
// already in containerd.
func EnsureImage(ctx context.Context, socket, ref string, build func() ([]byte, error)) (bool, error) {
	cl, err := ctrd.New(socket, ctrd.WithDefaultNamespace(Namespace), ctrd.WithTimeout(5*time.Second))
	if err != nil {
		return false, err
	}
	defer cl.Close()
	ctx = namespaces.WithNamespace(ctx, Namespace)
	if imagesPresent(ctx, cl, []string{ref}) {
		return false, nil
	}
	data, err := build()
	if err != nil {
		return false, err
	}
	_, err = importReader(ctx, cl, bytes.NewReader(data))
	return err == nil, err
}

func importReader(ctx context.Context, cl *ctrd.Client, in io.Reader) ([]string, error) {
	r, err := compression.DecompressStream(in)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	imgs, err := cl.Import(ctx, r)
	if err != nil {
		return nil, err
	}
	if len(imgs) == 0 {
		return nil, errors.New("no image in the tarball")
	}
	var refs []string
	for _, img := range imgs {
		if err := ctrd.NewImage(cl, img).Unpack(ctx, Snapshotter); err != nil {
			return nil, fmt.Errorf("unpacking %s: %w", img.Name, err)
		}
		refs = append(refs, img.Name)
	}
	return refs, nil
}

func imagesPresent(ctx context.Context, cl *ctrd.Client, refs []string) bool {
	for _, r := range refs {
		if _, err := cl.ImageService().Get(ctx, r); err != nil {
			return false
		}
	}
	return len(refs) > 0
}

func loadRecord(path string) map[string][]string {
	rec := map[string][]string{}
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &rec) // a damaged record only costs a re-import
	}
	return rec
}

func saveRecord(path string, rec map[string][]string) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o600)
}
