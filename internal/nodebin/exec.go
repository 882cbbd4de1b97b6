package nodebin

import (
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Exec replaces this process with an embedded binary. The binary runs from
// an anonymous in-memory file, so a tool such as `k1s crictl` works without
// a data dir and leaves nothing on disk. It is decompressed straight into
// that file, never held in this process's heap.
func Exec(name string, args []string) error {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	err = open(name, func(size int64, r io.Reader) error {
		_, err := io.CopyN(f, r, size)
		return err
	})
	if err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", name, err)
	}
	path := fmt.Sprintf("/proc/self/fd/%d", fd)
	return syscall.Exec(path, append([]string{name}, args...), os.Environ())
}
