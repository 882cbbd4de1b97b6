package selfextract

import (
	"bytes"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func TestDataDirFlag(t *testing.T) {
	cases := []struct {
		argv []string
		want string
	}{
		{[]string{"k1s", "server", "--data-dir", "/srv/a"}, "/srv/a"},
		{[]string{"k1s", "server", "--data-dir=/srv/b"}, "/srv/b"},
		{[]string{"k1s", "agent", "-d", "/srv/c", "--debug"}, "/srv/c"},
		{[]string{"k1s", "token", "list", "-d=/srv/d"}, "/srv/d"},
		{[]string{"k1s", "server", "-d", "/a", "--data-dir", "/b"}, "/b"}, // the last one wins, as for k1s
		{[]string{"k1s", "server", "--", "--data-dir", "/x"}, ""},
		{[]string{"k1s", "server", "--data-dir"}, ""},
		{[]string{"k1s", "--version"}, ""},
		{[]string{"k1s", "ctr", "run", "-d", "img", "id"}, ""}, // ctr's -d is detach
		{[]string{"/usr/local/bin/kubectl", "get", "pods", "-d", "x"}, ""},
		{[]string{"crictl", "-d", "x"}, ""},
		{nil, ""},
	}
	for _, c := range cases {
		if got := DataDirFlag(c.argv); got != c.want {
			t.Errorf("DataDirFlag(%q) = %q, want %q", c.argv, got, c.want)
		}
	}
}

func TestConfigDataDir(t *testing.T) {
	for in, want := range map[string]string{
		"data-dir: /srv/k1s\n":                       "/srv/k1s",
		"data-dir: \"/srv/with # hash\"\n":           "/srv/with # hash",
		"data-dir: '/srv/q' # comment\r\n":           "/srv/q",
		"token-file: /x\ndata-dir: /a\ndata-dir: /b": "/b", // the last one, as a flag given twice
		"node-label:\n  data-dir: /nested\n":         "",   // not a top-level key
		"# data-dir: /commented\n":                   "",
		"data-directory: /other\n":                   "",
		"":                                           "",
	} {
		if got := ConfigDataDir([]byte(in)); got != want {
			t.Errorf("ConfigDataDir(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestChooseDataDir(t *testing.T) {
	env := func(argv []string, vars map[string]string, euid int, usable ...string) Env {
		return Env{
			Argv:   argv,
			Getenv: func(k string) string { return vars[k] },
			Euid:   euid,
			Usable: func(d string) bool {
				for _, u := range usable {
					if u == d {
						return true
					}
				}
				return false
			},
			UserCacheDir: func() (string, error) { return "/home/u/.cache", nil },
		}
	}
	all := []string{"/flag", "/env", DefaultDataDir}
	for _, c := range []struct {
		name       string
		e          Env
		want, why  string
		errSubstrs []string
	}{
		{name: "flag over env", e: env([]string{"k1s", "server", "-d", "/flag"}, map[string]string{"K1S_DATA_DIR": "/env"}, 0, all...), want: "/flag", why: "--data-dir"},
		{name: "env over default", e: env([]string{"k1s", "server"}, map[string]string{"K1S_DATA_DIR": "/env"}, 0, all...), want: "/env", why: "K1S_DATA_DIR"},
		{name: "default", e: env([]string{"k1s", "--version"}, nil, 0, all...), want: DefaultDataDir, why: "default"},
		{name: "user, default writable", e: env([]string{"kubectl", "version"}, nil, 1000, all...), want: DefaultDataDir, why: "default"},
		{name: "user, default not writable", e: env([]string{"kubectl", "version"}, nil, 1000), want: "/home/u/.cache/k1s", why: "per-user cache"},
		{name: "user, flag not writable", e: env([]string{"k1s", "server", "--data-dir", "/flag"}, nil, 1000), want: "/home/u/.cache/k1s", why: "/flag is not writable"},
		{name: "root, not writable", e: env([]string{"k1s", "server"}, nil, 0), errSubstrs: []string{DefaultDataDir, "not writable", "--data-dir", "K1S_DATA_DIR"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ChooseDataDir(c.e)
			if c.errSubstrs != nil {
				if err == nil {
					t.Fatalf("chose %+v, want an error", got)
				}
				for _, s := range c.errSubstrs {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not mention %q", err, s)
					}
				}
				return
			}
			if err != nil || got.DataDir != c.want || !strings.Contains(got.Reason, c.why) {
				t.Fatalf("got %+v, %v; want %s (%s)", got, err, c.want, c.why)
			}
		})
	}
	// A relative --data-dir is made absolute: the exec'd k1s may chdir.
	e := env([]string{"k1s", "server", "-d", "rel"}, nil, 0)
	e.Usable = func(string) bool { return true }
	got, err := ChooseDataDir(e)
	wd, _ := os.Getwd()
	if err != nil || got.DataDir != filepath.Join(wd, "rel") {
		t.Fatalf("relative data dir: got %+v, %v", got, err)
	}
	// data-dir from the config file comes after the flag and K1S_DATA_DIR,
	// before the default; --config, then K1S_CONFIG, name the file.
	files := map[string]string{
		DefaultConfigFile: "# k1s\nnode-label: [a=b]\ndata-dir: /srv/etc # on the SSD\n",
		"/cfg/flag.yaml":  "data-dir: '/srv/flag'\n",
		"/cfg/env.yaml":   "\"data-dir\": \"/srv/env\"\n",
	}
	readFile := func(p string) ([]byte, error) {
		if s, ok := files[p]; ok {
			return []byte(s), nil
		}
		return nil, os.ErrNotExist
	}
	for _, c := range []struct {
		argv      []string
		vars      map[string]string
		want, why string
	}{
		{[]string{"k1s", "server"}, nil, "/srv/etc", "data-dir in " + DefaultConfigFile},
		{[]string{"k1s", "agent", "-c", "/cfg/flag.yaml"}, map[string]string{"K1S_CONFIG": "/cfg/env.yaml"}, "/srv/flag", "data-dir in /cfg/flag.yaml"},
		{[]string{"k1s", "server"}, map[string]string{"K1S_CONFIG": "/cfg/env.yaml"}, "/srv/env", "data-dir in /cfg/env.yaml"},
		{[]string{"k1s", "server"}, map[string]string{"K1S_CONFIG": "/cfg/missing.yaml"}, DefaultDataDir, "default"},
		{[]string{"k1s", "server", "-d", "/flag"}, nil, "/flag", "--data-dir"},
		{[]string{"k1s", "server"}, map[string]string{"K1S_DATA_DIR": "/env"}, "/env", "K1S_DATA_DIR"},
		{[]string{"kubectl", "get", "pods"}, nil, "/srv/etc", "data-dir in"}, // one copy for the tools too
	} {
		e := env(c.argv, c.vars, 0)
		e.Usable = func(string) bool { return true }
		e.ReadFile = readFile
		got, err := ChooseDataDir(e)
		if err != nil || got.DataDir != c.want || !strings.Contains(got.Reason, c.why) {
			t.Errorf("%q %v: got %+v, %v; want %s (%s)", c.argv, c.vars, got, err, c.want, c.why)
		}
	}

	// No cache folder either: the error says what to set.
	e = env([]string{"k1s"}, nil, 1000)
	e.UserCacheDir = func() (string, error) { return "", errors.New("neither $XDG_CACHE_HOME nor $HOME are defined") }
	if _, err := ChooseDataDir(e); err == nil || !strings.Contains(err.Error(), "HOME") {
		t.Fatalf("no cache dir: %v", err)
	}
}

// release writes a fake release file: launcher bytes, then payload packed.
func release(t *testing.T, payload []byte) (*os.File, Trailer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "k1s-release")
	var buf bytes.Buffer
	buf.WriteString("#!launcher stand-in\n")
	if err := Pack(&buf, int64(buf.Len()), bytes.NewReader(payload)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	tr, err := ReadTrailer(f)
	if err != nil {
		t.Fatal(err)
	}
	return f, tr
}

func payload(n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(1)).Read(b[:n/2]) // half noise, half compressible
	return b
}

func ino(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestEnsureUnpacksOnceAndRepairs(t *testing.T) {
	want := payload(3 << 20)
	f, tr := release(t, want)
	if tr.Size != int64(len(want)) || tr.Length >= tr.Size {
		t.Fatalf("trailer %+v: size or compression wrong", tr)
	}
	dataDir := t.TempDir()
	// Other versions' folders go after an unpack; other names stay.
	old := filepath.Join(dataDir, "data", strings.Repeat("ab", 32))
	keep := filepath.Join(dataDir, "data", "not-a-version")
	for _, d := range []string{old, keep} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(old, "k1s"), []byte("old"), 0o755); err != nil {
		t.Fatal(err)
	}

	res, err := Ensure(f, tr, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Unpacked || res.Target != filepath.Join(dataDir, "data", tr.ID(), "k1s") {
		t.Fatalf("first Ensure: %+v", res)
	}
	got, err := os.ReadFile(res.Target)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("unpacked file differs from the payload: %v", err)
	}
	if st, _ := os.Stat(res.Target); st.Mode().Perm() != 0o755 {
		t.Errorf("unpacked file mode %v, want 0755", st.Mode())
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("old version folder still there: %v", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("a folder that is no version was removed: %v", err)
	}
	first := ino(t, res.Target)

	// Second start: nothing written.
	res, err = Ensure(f, tr, dataDir)
	if err != nil || res.Unpacked || ino(t, res.Target) != first {
		t.Fatalf("second Ensure unpacked again: %+v, %v", res, err)
	}

	// Lost stamp, intact file: verified by its checksum, not rewritten.
	os.Remove(stampPath(res.Target))
	res, err = Ensure(f, tr, dataDir)
	if err != nil || res.Unpacked || ino(t, res.Target) != first || !Fresh(res.Target, tr) {
		t.Fatalf("Ensure after a lost stamp: %+v, %v", res, err)
	}

	// Damaged in place (same size): replaced.
	w, err := os.OpenFile(res.Target, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("garbage"), 1000); err != nil {
		t.Fatal(err)
	}
	w.Close()
	res, err = Ensure(f, tr, dataDir)
	if err != nil || !res.Unpacked {
		t.Fatalf("Ensure after damage: %+v, %v", res, err)
	}
	if got, _ := os.ReadFile(res.Target); !bytes.Equal(got, want) {
		t.Fatal("damaged file not repaired")
	}
	// Truncated: replaced too.
	if err := os.Truncate(res.Target, 100); err != nil {
		t.Fatal(err)
	}
	if res, err = Ensure(f, tr, dataDir); err != nil || !res.Unpacked {
		t.Fatalf("Ensure after truncation: %+v, %v", res, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(res.Target))
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "k1s k1s.stamp" {
		t.Errorf("version folder holds %v, want only k1s and its stamp", names)
	}
}

func TestEnsureRefusesDamagedPayload(t *testing.T) {
	want := payload(1 << 20)
	f, tr := release(t, want)
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	b[tr.Offset+tr.Length/2] ^= 0xff
	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(bad, b, 0o755); err != nil {
		t.Fatal(err)
	}
	bf, err := os.Open(bad)
	if err != nil {
		t.Fatal(err)
	}
	defer bf.Close()
	dataDir := t.TempDir()
	_, err = Ensure(bf, tr, dataDir)
	if err == nil || !strings.Contains(err.Error(), "download it again") {
		t.Fatalf("damaged payload: %v, want an error telling to download again", err)
	}
	if _, err := os.Stat(Target(dataDir, tr)); !os.IsNotExist(err) {
		t.Fatalf("a damaged unpack left %s: %v", Target(dataDir, tr), err)
	}
}

func TestReadTrailerWithoutPayload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(path, bytes.Repeat([]byte{1}, 500), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := ReadTrailer(f); !errors.Is(err, errNoPayload) {
		t.Fatalf("ReadTrailer of a file without payload: %v", err)
	}
}

// Concurrent starts: one unpacks, the others wait for it; a reader never
// sees a partial k1s at the target path.
func TestConcurrentEnsure(t *testing.T) {
	want := payload(8 << 20)
	f, tr := release(t, want)
	dataDir := t.TempDir()
	target := Target(dataDir, tr)
	stop := make(chan struct{})
	readerErr := make(chan error, 1)
	go func() {
		defer close(readerErr)
		for {
			select {
			case <-stop:
				return
			default:
			}
			got, err := os.ReadFile(target)
			if err == nil && !bytes.Equal(got, want) {
				readerErr <- errors.New("a reader saw a partial or wrong k1s")
				return
			}
		}
	}()
	var wg sync.WaitGroup
	var mu sync.Mutex
	unpacks := 0
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := Ensure(f, tr, dataDir)
			if err != nil {
				t.Error(err)
				return
			}
			if res.Unpacked {
				mu.Lock()
				unpacks++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(stop)
	if err := <-readerErr; err != nil {
		t.Fatal(err)
	}
	if unpacks != 1 {
		t.Fatalf("%d of 4 concurrent starts unpacked, want exactly 1", unpacks)
	}
}
