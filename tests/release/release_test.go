// Package release checks what `make release` wrote to dist/: checksums,
// the architecture of every executable (and of the binaries embedded in
// k1s and in the air-gap bundles), static linking, and the arm64
// executable run under qemu-user: --version, kubectl, and a control plane
// reaching /readyz. `make test-all` runs it after `make release-check`;
// K1S_DIST names another dist/ folder.
package release

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/k1s-io/k1s/internal/selfextract"
	"github.com/k1s-io/k1s/tests/harness"
)

type arch struct {
	name    string // GOARCH
	exe     string // executable's name in dist/
	machine elf.Machine
}

var arches = []arch{
	{"amd64", "k1s", elf.EM_X86_64},
	{"arm64", "k1s-arm64", elf.EM_AARCH64},
}

const qemu = "qemu-aarch64-static"

// nodeBinaries are the executables `make nodebin` builds and k1s embeds
// (internal/nodebin; not imported, which would embed the host's into this
// test).
var nodeBinaries = []string{"runc", "containerd", "containerd-shim-runc-v2", "bridge", "host-local", "loopback", "portmap", "crictl", "pause"}

// repoRoot is the checkout this test runs in.
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := wd; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	t.Fatalf("no go.mod above %s", wd)
	return ""
}

// distDir is $K1S_DIST or dist/ of this checkout; it must hold a release.
func distDir(t *testing.T) string {
	t.Helper()
	d := os.Getenv("K1S_DIST")
	if d == "" {
		d = filepath.Join(repoRoot(t), "dist")
	}
	if _, err := os.Stat(filepath.Join(d, "sha256sum-amd64.txt")); err != nil {
		t.Fatalf("no release in %s (%v): run `make release` first", d, err)
	}
	return d
}

func TestChecksumFiles(t *testing.T) {
	dist := distDir(t)
	for _, a := range arches {
		t.Run(a.name, func(t *testing.T) {
			sumFile := "sha256sum-" + a.name + ".txt"
			data, err := os.ReadFile(filepath.Join(dist, sumFile))
			if err != nil {
				t.Fatal(err)
			}
			// Exactly the executable, the bundle and the killall script
			// install.sh installs, in sha256sum's format.
			want := []string{a.exe, "k1s-airgap-images-" + a.name + ".tar.zst", "k1s-killall.sh"}
			var names []string
			for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
				sum, name, ok := strings.Cut(line, "  ")
				if !ok || len(sum) != 64 {
					t.Fatalf("%s: line %q is not `<sha256>  <name>`", sumFile, line)
				}
				got, err := fileSHA256(filepath.Join(dist, name))
				if err != nil {
					t.Fatal(err)
				}
				if got != sum {
					t.Errorf("%s: %s has sha256 %s, the file lists %s", sumFile, name, got, sum)
				}
				names = append(names, name)
			}
			sort.Strings(names)
			sort.Strings(want)
			if strings.Join(names, " ") != strings.Join(want, " ") {
				t.Errorf("%s lists %v, want %v", sumFile, names, want)
			}
			// What a user runs after downloading.
			cmd := exec.Command("sha256sum", "-c", "--strict", sumFile)
			cmd.Dir = dist
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("sha256sum -c %s: %v\n%s", sumFile, err, out)
			}
		})
	}
}

func TestInstallScriptIsTheCheckoutsScript(t *testing.T) {
	dist := distDir(t)
	got, err := os.ReadFile(filepath.Join(dist, "install.sh"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(repoRoot(t), "scripts", "install.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("dist/install.sh differs from scripts/install.sh: run `make release` again")
	}
}

// maxReleaseMiB is issue 13's download target for the amd64 executable.
const maxReleaseMiB = 70

// TestExecutables checks each release executable: a static launcher for
// the architecture whose payload unpacks (size and sha256 as its trailer
// says) to a static k1s for the same architecture, whose embedded helper
// archive holds every node binary, each an ELF for that machine; and the
// amd64 file is at most maxReleaseMiB.
func TestExecutables(t *testing.T) {
	dist := distDir(t)
	for _, a := range arches {
		t.Run(a.name, func(t *testing.T) {
			path := filepath.Join(dist, a.exe)
			checkStaticELF(t, path, a.machine)
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			mib := float64(st.Size()) / (1 << 20)
			t.Logf("%s: %.2f MiB", a.exe, mib)
			if a.name == "amd64" && mib > maxReleaseMiB {
				t.Errorf("%s is %.2f MiB, over the %d MiB target", a.exe, mib, maxReleaseMiB)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			tr, err := selfextract.ReadTrailer(f)
			if err != nil {
				t.Fatal(err)
			}
			res, err := selfextract.Ensure(f, tr, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			checkStaticELF(t, res.Target, a.machine)
			data, err := os.ReadFile(res.Target)
			if err != nil {
				t.Fatal(err)
			}
			helpers := embeddedHelpers(t, data)
			var names []string
			for name, m := range helpers {
				names = append(names, name)
				if m != a.machine {
					t.Errorf("embedded %s is for %s, want %s", name, m, a.machine)
				}
			}
			sort.Strings(names)
			want := append([]string{}, nodeBinaries...)
			sort.Strings(want)
			if strings.Join(names, " ") != strings.Join(want, " ") {
				t.Errorf("embedded helpers %v, want %v", names, want)
			}
			t.Logf("%s: launcher %s, static; payload %.1f MiB (%.1f MiB compressed), static, helpers %v",
				a.exe, a.machine, float64(tr.Size)/(1<<20), float64(tr.Length)/(1<<20), names)
		})
	}
}

func checkStaticELF(t *testing.T, path string, machine elf.Machine) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != machine {
		t.Errorf("%s is for %s, want %s", path, f.Machine, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked (has a program interpreter); release executables are static", path)
		}
	}
}

// embeddedHelpers finds internal/nodebin's archive (a zstd-compressed tar
// whose first file is pause) inside a k1s executable and returns the
// machine of each ELF in it.
func embeddedHelpers(t *testing.T, exe []byte) map[string]elf.Machine {
	t.Helper()
	zmagic := []byte{0x28, 0xb5, 0x2f, 0xfd}
	for off := 0; ; {
		i := bytes.Index(exe[off:], zmagic)
		if i < 0 {
			t.Fatal("no embedded helper archive (zstd tar starting with pause) found: were the node binaries built?")
		}
		off += i + 1
		zr, err := zstd.NewReader(bytes.NewReader(exe[off-1:]), zstd.WithDecoderConcurrency(1))
		if err != nil {
			continue
		}
		tr := tar.NewReader(zr)
		h, err := tr.Next()
		if err != nil || h.Name != "pause" {
			zr.Close()
			continue
		}
		out := map[string]elf.Machine{}
		for ; err == nil; h, err = tr.Next() {
			b, rerr := io.ReadAll(tr)
			if rerr != nil {
				t.Fatalf("embedded %s: %v", h.Name, rerr)
			}
			f, eerr := elf.NewFile(bytes.NewReader(b))
			if eerr != nil {
				t.Fatalf("embedded %s is no ELF: %v", h.Name, eerr)
			}
			out[h.Name] = f.Machine
		}
		zr.Close()
		if err != io.EOF {
			t.Fatalf("embedded helper archive: %v", err)
		}
		return out
	}
}

// TestBundles reads each air-gap bundle: every image's config names the
// bundle's architecture, every executable in a layer is an ELF for it,
// and both bundles hold the same image tags.
func TestBundles(t *testing.T) {
	dist := distDir(t)
	tags := map[string][]string{}
	for _, a := range arches {
		t.Run(a.name, func(t *testing.T) {
			b, err := readBundle(filepath.Join(dist, "k1s-airgap-images-"+a.name+".tar.zst"))
			if err != nil {
				t.Fatal(err)
			}
			if len(b.manifest) < 2 {
				t.Fatalf("bundle lists %d images, want CoreDNS and k1s-ingress at least", len(b.manifest))
			}
			for _, m := range b.manifest {
				tags[a.name] = append(tags[a.name], m.RepoTags...)
				var cfg struct {
					Architecture string `json:"architecture"`
					OS           string `json:"os"`
					Config       struct {
						Entrypoint []string `json:"Entrypoint"`
					} `json:"config"`
				}
				if err := json.Unmarshal(b.files[m.Config], &cfg); err != nil {
					t.Fatalf("%v: config %s: %v", m.RepoTags, m.Config, err)
				}
				if cfg.Architecture != a.name || cfg.OS != "linux" {
					t.Errorf("%v: config says %s/%s, want linux/%s", m.RepoTags, cfg.OS, cfg.Architecture, a.name)
				}
				if len(m.Layers) != 1 || len(cfg.Config.Entrypoint) != 1 {
					t.Fatalf("%v: %d layers, entrypoint %v: want one layer and one entrypoint", m.RepoTags, len(m.Layers), cfg.Config.Entrypoint)
				}
				exe, err := layerFile(b.files[m.Layers[0]], strings.TrimPrefix(cfg.Config.Entrypoint[0], "/"))
				if err != nil {
					t.Fatalf("%v: %v", m.RepoTags, err)
				}
				f, err := elf.NewFile(bytes.NewReader(exe))
				if err != nil {
					t.Fatalf("%v: entrypoint %s: %v", m.RepoTags, cfg.Config.Entrypoint[0], err)
				}
				if f.Machine != a.machine {
					t.Errorf("%v: entrypoint %s is for %s, want %s", m.RepoTags, cfg.Config.Entrypoint[0], f.Machine, a.machine)
				}
			}
			sort.Strings(tags[a.name])
		})
	}
	if t.Failed() {
		return
	}
	if fmt.Sprint(tags["amd64"]) != fmt.Sprint(tags["arm64"]) {
		t.Errorf("the bundles hold different images: amd64 %v, arm64 %v", tags["amd64"], tags["arm64"])
	}
}

type bundle struct {
	manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	files map[string][]byte
}

// readBundle loads a docker-save style tarball, zstd-compressed, into memory.
func readBundle(path string) (*bundle, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := zstd.NewReader(bufio.NewReader(f))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	b := &bundle{files: map[string][]byte{}}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if b.files[h.Name], err = io.ReadAll(tr); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, h.Name, err)
		}
	}
	if err := json.Unmarshal(b.files["manifest.json"], &b.manifest); err != nil {
		return nil, fmt.Errorf("%s: manifest.json: %w", path, err)
	}
	return b, nil
}

// layerFile returns the content of file name in an uncompressed layer tar.
func layerFile(layer []byte, name string) ([]byte, error) {
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := tr.Next()
		if err != nil {
			return nil, fmt.Errorf("%s not in the layer: %v", name, err)
		}
		if h.Name == name {
			return io.ReadAll(tr)
		}
	}
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// arm64Exe returns dist/k1s-arm64 and checks that qemu is there to run it.
func arm64Exe(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath(qemu); err != nil {
		t.Fatalf("%s not found (%v): install qemu-user-static (scripts/install-deps.sh --release)", qemu, err)
	}
	return filepath.Join(distDir(t), "k1s-arm64")
}

// run runs argv with K1S_DATA_DIR=dataDir and returns its stdout and
// stderr; it fails the test if the command fails.
func run(t *testing.T, dataDir string, argv ...string) (stdout, stderr string) {
	t.Helper()
	stdout, stderr, err := runErr(dataDir, argv...)
	if err != nil {
		t.Fatalf("%s: %v\n%s%s", strings.Join(argv, " "), err, stdout, stderr)
	}
	return stdout, stderr
}

func runErr(dataDir string, argv ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = harness.Env("K1S_DATA_DIR=" + dataDir)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// arm64Payload runs the arm64 launcher under qemu, which unpacks its k1s
// into dataDir, and returns the unpacked file. Its exec of that file
// works only where the kernel runs arm64 executables (an arm64 machine, or
// qemu registered with binfmt_misc, which this host lacks): here it may
// fail with "exec format error", so the tests below run the unpacked k1s
// under qemu themselves.
func arm64Payload(t *testing.T, dataDir string) string {
	t.Helper()
	exe := arm64Exe(t)
	f, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr, err := selfextract.ReadTrailer(f)
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := runErr(dataDir, qemu, exe, "--version")
	if err != nil && !strings.Contains(stderr, "exec format error") {
		t.Fatalf("k1s-arm64 --version (the launcher under qemu): %v\n%s%s", err, stdout, stderr)
	}
	target := selfextract.Target(dataDir, tr)
	if !selfextract.Fresh(target, tr) {
		t.Fatalf("the arm64 launcher left no verified k1s at %s", target)
	}
	return target
}

// runBoth runs the executable of each architecture (arm64's unpacked k1s
// under qemu) with args and returns the two standard outputs.
func runBoth(t *testing.T, args ...string) (amd64, arm64 string) {
	t.Helper()
	// One data dir each: an unpack removes other versions' folders.
	armDir, amdDir := t.TempDir(), t.TempDir()
	arm := arm64Payload(t, armDir)
	amd, _ := run(t, amdDir, append([]string{filepath.Join(distDir(t), "k1s")}, args...)...)
	armOut, _ := run(t, armDir, append([]string{qemu, arm}, args...)...)
	return amd, armOut
}

func TestArm64VersionUnderQemu(t *testing.T) {
	amd, arm := runBoth(t, "--version")
	if !strings.HasPrefix(arm, "k1s version v") || !strings.Contains(arm, "kubernetes v1.") {
		t.Fatalf("k1s-arm64 --version printed %q", arm)
	}
	// Both executables come from one commit: the same version stamps.
	if arm != amd {
		t.Fatalf("--version differs between the architectures:\namd64: %q\narm64: %q", amd, arm)
	}
}

func TestArm64KubectlUnderQemu(t *testing.T) {
	amd, arm := runBoth(t, "kubectl", "version", "--client")
	if !strings.Contains(arm, "Client Version: v1.") {
		t.Fatalf("k1s-arm64 kubectl version --client printed %q", arm)
	}
	if arm != amd {
		t.Fatalf("kubectl version --client differs between the architectures:\namd64: %q\narm64: %q", amd, arm)
	}
}

// TestArm64ServerUnderQemu starts the arm64 control plane (no agent)
// under qemu in a lab network namespace, with its own data dir and free
// ports, and waits for /readyz; then the arm64 kubectl lists the
// namespaces through it. Emulation makes it slow: minutes, not seconds.
func TestArm64ServerUnderQemu(t *testing.T) {
	exe := arm64Payload(t, t.TempDir())
	t.Setenv("K1S_BIN", exe) // harness.Bin: the server below runs it
	lab := harness.NewLab(t)
	host := lab.AddHost(t, "arm")
	s, err := harness.NewServer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s.PlaceIn(host)
	s.Prefix = append(s.Prefix, qemu)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	// Registered after the lab's cleanup, so it runs first: the server is
	// stopped by its PID before the lab kills what is left in the namespace.
	t.Cleanup(func() {
		if err := s.Stop(2 * time.Minute); err != nil {
			t.Errorf("stopping the arm64 server: %v", err)
		}
	})
	start := time.Now()
	if err := s.WaitReady(10 * time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("k1s-arm64 server under qemu: /readyz ok after %s", time.Since(start).Round(time.Second))

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, exe, "kubectl", "--kubeconfig", s.Kubeconfig,
		"--server", "https://"+s.Addr(), "get", "namespace", "kube-system", "-o", "name")
	cmd.Env = harness.Env()
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "namespace/kube-system" {
		t.Fatalf("k1s-arm64 kubectl get namespace kube-system: %v: %q", err, out)
	}
	if err := s.Stop(2 * time.Minute); err != nil {
		t.Fatalf("k1s-arm64 server did not stop cleanly on SIGTERM: %v\n%s", err, s.Tail(20))
	}
}
