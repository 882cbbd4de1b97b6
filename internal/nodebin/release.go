package nodebin

import (
	"io/fs"
	"os"
	"reflect"
	"unsafe"

	"golang.org/x/sys/unix"
)

// release drops the pages of an embedded binary from this process's
// resident set once it has been copied out. The data lives in the k1s
// executable's read-only mapping, so the kernel re-reads it from the page
// cache if it is ever touched again; without this, installing the helper
// binaries would keep ~100 MB of them resident in k1s for its lifetime.
// It relies on embed's file layout (an *openFile holding a *file whose
// second field is the data string) and does nothing if that changes.
func release(name string) {
	defer func() { _ = recover() }()
	f, err := files.Open(binDir + "/" + name)
	if err != nil {
		return
	}
	defer f.Close()
	data, ok := embeddedData(f)
	if !ok || len(data) == 0 {
		return
	}
	page := uintptr(os.Getpagesize())
	base := unsafe.StringData(data)
	start := uintptr(unsafe.Pointer(base))
	first := (start+page-1)&^(page-1) - start
	last := (start+uintptr(len(data)))&^(page-1) - start
	if last <= first {
		return
	}
	mem := unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(base), first)), last-first)
	_ = unix.Madvise(mem, unix.MADV_DONTNEED)
}

func embeddedData(f fs.File) (string, bool) {
	v := reflect.ValueOf(f)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct || v.Elem().NumField() == 0 {
		return "", false
	}
	fp := v.Elem().Field(0)
	if fp.Kind() != reflect.Pointer || fp.Elem().Kind() != reflect.Struct || fp.Elem().NumField() < 2 {
		return "", false
	}
	d := fp.Elem().Field(1)
	if d.Kind() != reflect.String {
		return "", false
	}
	return d.String(), true
}
