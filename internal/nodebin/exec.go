package nodebin

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Exec replaces this process with an embedded binary. The binary runs from
// an anonymous in-memory file, so a tool such as `k1s crictl` works without
// a data dir and leaves nothing on disk.
func Exec(name string, args []string) error {
	data, err := Read(name)
	if err != nil {
		return err
	}
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	path := fmt.Sprintf("/proc/self/fd/%d", fd)
	return syscall.Exec(path, append([]string{name}, args...), os.Environ())
}
