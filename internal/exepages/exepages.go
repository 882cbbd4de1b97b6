// Package exepages gives back to the kernel the pages of the running
// executable that only start-up needed. A k1s process maps its whole
// binary; start-up runs the init of every linked package and builds every
// component, and each of those page faults also maps the cached pages
// around it (fault-around, readahead). Once started, the process needs a
// much smaller part of its code and tables, but the rest stays mapped and
// counts in its RSS and PSS until memory pressure makes the kernel drop it.
//
// Release marks the executable's read-only mappings random-access (so that
// a page faulted in later brings no neighbours along) and asks the kernel
// to reclaim them now (MADV_PAGEOUT, Linux 5.4+). The pages are clean
// copies of the file: what the process touches again is read back on
// demand, and nothing is written anywhere. Pages another process maps as
// well are left alone by the kernel.
package exepages

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Mapping is one address range of /proc/<pid>/maps.
type Mapping struct {
	Start, End uint64
	Perms      string
	Path       string
}

// Size is the mapping's length in bytes.
func (m Mapping) Size() uint64 { return m.End - m.Start }

// ParseMaps reads the lines of a /proc/<pid>/maps file.
func ParseMaps(r io.Reader) ([]Mapping, error) {
	var out []Mapping
	s := bufio.NewScanner(r)
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) < 5 {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			return nil, fmt.Errorf("maps line %q: no address range", s.Text())
		}
		start, err := strconv.ParseUint(lo, 16, 64)
		if err != nil {
			return nil, fmt.Errorf("maps line %q: %w", s.Text(), err)
		}
		end, err := strconv.ParseUint(hi, 16, 64)
		if err != nil {
			return nil, fmt.Errorf("maps line %q: %w", s.Text(), err)
		}
		m := Mapping{Start: start, End: end, Perms: f[1]}
		if len(f) >= 6 {
			m.Path = strings.Join(f[5:], " ")
		}
		out = append(out, m)
	}
	return out, s.Err()
}

// ReadOnlyOf are the mappings of the file at path that the process cannot
// write: the executable's text and read-only data. Its writable data
// segment is left out (its written pages are the process's own memory).
func ReadOnlyOf(maps []Mapping, path string) []Mapping {
	var out []Mapping
	for _, m := range maps {
		if m.Path == path && !strings.Contains(m.Perms, "w") && m.Size() > 0 {
			out = append(out, m)
		}
	}
	return out
}

// advise is madvise(2) on an address range of this process, replaced in
// tests. Raw, because the ranges are not Go memory.
var advise = func(start, length uint64, advice int) error {
	_, _, e := unix.Syscall(unix.SYS_MADVISE, uintptr(start), uintptr(length), uintptr(advice))
	if e != 0 {
		return e
	}
	return nil
}

// Release advises the kernel to reclaim the running executable's read-only
// pages (see the package comment) and returns how many bytes of mappings
// it covered. An error says which step failed; on a kernel without
// MADV_PAGEOUT it is EINVAL and nothing was changed but the access hint.
func Release() (uint64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	maps, err := ParseMaps(f)
	f.Close()
	if err != nil {
		return 0, err
	}
	return release(ReadOnlyOf(maps, exe))
}

func release(ms []Mapping) (uint64, error) {
	if len(ms) == 0 {
		return 0, fmt.Errorf("no read-only mapping of the executable found in /proc/self/maps")
	}
	var n uint64
	for _, m := range ms {
		if err := advise(m.Start, m.Size(), unix.MADV_RANDOM); err != nil {
			return n, fmt.Errorf("madvise(MADV_RANDOM) %x-%x: %w", m.Start, m.End, err)
		}
		if err := advise(m.Start, m.Size(), unix.MADV_PAGEOUT); err != nil {
			return n, fmt.Errorf("madvise(MADV_PAGEOUT) %x-%x: %w", m.Start, m.End, err)
		}
		n += m.Size()
	}
	return n, nil
}

// Report runs Release and says in one line, for the log, what it did.
// A failure is only reported: the pages then stay mapped, as before.
func Report() string {
	n, err := Release()
	if errors.Is(err, unix.EINVAL) {
		return fmt.Sprintf("start-up pages of the executable stay mapped: %v (MADV_PAGEOUT needs Linux 5.4 or later)", err)
	}
	if err != nil {
		return fmt.Sprintf("start-up pages of the executable stay mapped: %v", err)
	}
	return fmt.Sprintf("gave the kernel back the start-up pages of the executable (%d MiB of read-only mappings; what runs from now on is read back on demand)", n>>20)
}
