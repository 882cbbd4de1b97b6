// Package images builds the small container images the tests run, from
// Debian's busybox-static, as image tarballs that containerd imports. No
// registry is involved.
package images

import (
	"fmt"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/k1s-io/k1s/internal/imagebuild"
)

// BusyboxPath is where Debian's busybox-static installs its binary.
const BusyboxPath = "/bin/busybox"

// Applets are the busybox commands the image links into /bin.
var Applets = []string{"sh", "sleep", "echo", "cat", "ls", "touch", "mkdir", "rm", "test", "wget", "nslookup",
	"httpd", "nc", "true", "false", "hostname", "env", "ps", "date", "seq"}

// Busybox builds an image named ref holding busybox (with its applets as
// links) and writes it to path as an image tarball.
func Busybox(path, ref string, cmd ...string) error {
	return build(path, ref, nil, cmd)
}

// BusyboxWith is Busybox plus more files (e.g. a probe binary in bin/).
func BusyboxWith(path, ref string, extra []imagebuild.File, cmd ...string) error {
	return build(path, ref, extra, cmd)
}

func build(path, ref string, extra []imagebuild.File, cmd []string) error {
	bin, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return fmt.Errorf("reading %s (install Debian's busybox-static): %w", BusyboxPath, err)
	}
	files := []imagebuild.File{{Name: "bin/", Mode: 0o755}, {Name: "tmp/", Mode: 0o1777}, {Name: "etc/", Mode: 0o755},
		{Name: "bin/busybox", Mode: 0o755, Data: bin}}
	files = append(files, extra...)
	for _, a := range Applets {
		files = append(files, imagebuild.File{Name: "bin/" + a, Mode: 0o777, Link: "busybox"})
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := imagebuild.Write(f, ref, files, v1.Config{Cmd: cmd, Env: []string{"PATH=/bin"}}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
