package exepages

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A maps file as the kernel writes it: an executable's header, text,
// read-only data and data segments, its bss, a library and the stack.
const sampleMaps = `00400000-00401000 r--p 00000000 08:01 1234       /usr/local/bin/k1s
00401000-02000000 r-xp 00001000 08:01 1234       /usr/local/bin/k1s
02000000-05000000 r--p 01c00000 08:01 1234       /usr/local/bin/k1s
05000000-05100000 rw-p 04c00000 08:01 1234       /usr/local/bin/k1s
05100000-05200000 rw-p 00000000 00:00 0
7f0000000000-7f0000010000 r-xp 00000000 08:01 99         /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000020000-7f0000021000 r--p 00000000 08:01 77         /usr/local/bin/k1s (deleted)
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0          [stack]
`

func TestReadOnlyOfTakesOnlyTheExecutablesUnwritableMappings(t *testing.T) {
	maps, err := ParseMaps(strings.NewReader(sampleMaps))
	if err != nil {
		t.Fatal(err)
	}
	if len(maps) != 8 {
		t.Fatalf("parsed %d mappings, want 8: %+v", len(maps), maps)
	}
	if maps[6].Path != "/usr/local/bin/k1s (deleted)" {
		t.Errorf("a path with a space: %q", maps[6].Path)
	}
	got := ReadOnlyOf(maps, "/usr/local/bin/k1s")
	want := []Mapping{
		{0x400000, 0x401000, "r--p", "/usr/local/bin/k1s"},
		{0x401000, 0x2000000, "r-xp", "/usr/local/bin/k1s"},
		{0x2000000, 0x5000000, "r--p", "/usr/local/bin/k1s"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mapping %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestParseMapsRejectsALineWithoutARange(t *testing.T) {
	_, err := ParseMaps(strings.NewReader("00400000 r--p 00000000 08:01 1234 /bin/x\n"))
	if err == nil || !strings.Contains(err.Error(), "no address range") {
		t.Fatalf("err = %v, want one about the address range", err)
	}
}

type call struct {
	start, length uint64
	advice        int
}

func fakeAdvise(t *testing.T, failOn int) *[]call {
	var calls []call
	old := advise
	advise = func(start, length uint64, advice int) error {
		calls = append(calls, call{start, length, advice})
		if advice == failOn {
			return unix.EINVAL
		}
		return nil
	}
	t.Cleanup(func() { advise = old })
	return &calls
}

func TestReleaseMarksEachMappingRandomThenPagesItOut(t *testing.T) {
	calls := fakeAdvise(t, -1)
	ms := []Mapping{{0x1000, 0x3000, "r-xp", "/k1s"}, {0x5000, 0x6000, "r--p", "/k1s"}}
	n, err := release(ms)
	if err != nil {
		t.Fatal(err)
	}
	if n != 0x3000 {
		t.Errorf("released %#x bytes, want 0x3000", n)
	}
	want := []call{
		{0x1000, 0x2000, unix.MADV_RANDOM}, {0x1000, 0x2000, unix.MADV_PAGEOUT},
		{0x5000, 0x1000, unix.MADV_RANDOM}, {0x5000, 0x1000, unix.MADV_PAGEOUT},
	}
	if len(*calls) != len(want) {
		t.Fatalf("calls %+v, want %+v", *calls, want)
	}
	for i := range want {
		if (*calls)[i] != want[i] {
			t.Errorf("call %d: %+v, want %+v", i, (*calls)[i], want[i])
		}
	}
}

func TestReleaseStopsAtAKernelWithoutPageout(t *testing.T) {
	calls := fakeAdvise(t, unix.MADV_PAGEOUT)
	_, err := release([]Mapping{{0x1000, 0x3000, "r-xp", "/k1s"}, {0x5000, 0x6000, "r--p", "/k1s"}})
	if !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "MADV_PAGEOUT") {
		t.Fatalf("err = %v, want EINVAL naming MADV_PAGEOUT", err)
	}
	if len(*calls) != 2 {
		t.Errorf("%d calls after the failure, want it to stop there: %+v", len(*calls), *calls)
	}
	if _, err := release(nil); err == nil {
		t.Error("no mapping at all: want an error")
	}
}

// exeResident is the kB of this process's executable that its page
// tables map now (Rss of its mappings in /proc/self/smaps).
func exeResident(t *testing.T) int64 {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	var kb int64
	in := false
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			in = len(f) >= 6 && strings.Join(f[5:], " ") == exe
		case in && len(f) == 3 && f[0] == "Rss:":
			v, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatalf("smaps line %q: %v", l, err)
			}
			kb += v
		}
	}
	return kb
}

// The real thing, on this test binary: its pages are mapped now (it is
// running), and the kernel unmaps them when asked.
func TestReleaseUnmapsTheRunningExecutablesPages(t *testing.T) {
	before := exeResident(t)
	if before < 512 {
		t.Fatalf("only %d kB of the test binary mapped before: cannot tell a release", before)
	}
	n, err := Release()
	if err != nil {
		t.Fatalf("Release: %v (this machine's kernel has MADV_PAGEOUT)", err)
	}
	after := exeResident(t)
	if n == 0 || after >= before/2 {
		t.Fatalf("released %d bytes of mappings; %d kB mapped before, %d kB after: want under half", n, before, after)
	}
	t.Logf("test binary's mapped pages: %d kB before, %d kB after", before, after)
}
