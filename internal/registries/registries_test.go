package registries

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	ctdconfig "github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/pelletier/go-toml/v2"
	tomlu "github.com/pelletier/go-toml/v2/unstable"
)

// hostTable and hostFile are hosts.toml as containerd decodes it (its
// hostFileConfig).
type hostTable struct {
	Capabilities []string       `toml:"capabilities"`
	CA           any            `toml:"ca"`
	Client       any            `toml:"client"`
	SkipVerify   *bool          `toml:"skip_verify"`
	Header       map[string]any `toml:"header"`
	OverridePath bool           `toml:"override_path"`
}

type hostFile struct {
	hostTable
	Server string               `toml:"server"`
	Host   map[string]hostTable `toml:"host"`
	order  []string
}

// readHosts decodes dir/name/hosts.toml strictly, and its host order the
// way containerd reads it.
func readHosts(t *testing.T, dir, name string) hostFile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name, "hosts.toml"))
	if err != nil {
		t.Fatal(err)
	}
	var f hostFile
	dec := toml.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s/hosts.toml is not valid for containerd: %v\n%s", name, err, data)
	}
	p := tomlu.Parser{}
	p.Reset(data)
	for p.NextExpression() {
		e := p.Expression()
		if e.Kind != tomlu.Table {
			continue
		}
		var parts []string
		for it := e.Key(); it.Next(); {
			parts = append(parts, string(it.Node().Data))
		}
		if len(parts) == 2 && parts[0] == "host" {
			f.order = append(f.order, parts[1])
		}
	}
	if err := p.Error(); err != nil {
		t.Fatal(err)
	}
	return f
}

// writePEM writes a self-signed certificate and its key, valid as both a
// CA file and a client pair for containerd.
func writePEM(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

const fullExample = `mirrors:
  docker.io:
    endpoint:
      - "https://mirror.example.com:5000"
      - "http://10.0.0.1:5000"
    rewrite:
      "^library/(.*)": "mirrored/$1"
  "*":
    endpoint: ["https://fallback.example.com"]
configs:
  "mirror.example.com:5000":
    auth:
      username: u
      password: p
    tls:
      ca_file: CA
      cert_file: CERT
      key_file: KEY
      insecure_skip_verify: true
`

func parseFull(t *testing.T) (*Registries, string, string) {
	t.Helper()
	cert, key := writePEM(t, t.TempDir())
	src := strings.NewReplacer("CA", cert, "CERT", cert, "KEY", key).Replace(fullExample)
	r, err := Parse("registries.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return r, cert, key
}

func TestFullExample(t *testing.T) {
	r, cert, key := parseFull(t)
	dir := t.TempDir()
	if err := WriteHostsDir(dir, r); err != nil {
		t.Fatal(err)
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("u:p"))

	docker := readHosts(t, dir, "docker.io")
	if docker.Server != "https://registry-1.docker.io" {
		t.Errorf("docker.io server = %q", docker.Server)
	}
	wantOrder := []string{"https://mirror.example.com:5000", "http://10.0.0.1:5000"}
	if !slices.Equal(docker.order, wantOrder) {
		t.Errorf("docker.io host order = %q, want %q", docker.order, wantOrder)
	}
	for _, h := range wantOrder {
		if got := docker.Host[h].Capabilities; !slices.Equal(got, []string{"pull", "resolve"}) {
			t.Errorf("%s capabilities = %q", h, got)
		}
		if docker.Host[h].OverridePath {
			t.Errorf("%s has override_path without a path", h)
		}
	}
	m := docker.Host["https://mirror.example.com:5000"]
	if m.CA != cert {
		t.Errorf("mirror ca = %v, want %q", m.CA, cert)
	}
	if want := []any{[]any{cert, key}}; !reflect.DeepEqual(m.Client, want) {
		t.Errorf("mirror client = %v, want %v", m.Client, want)
	}
	if m.SkipVerify == nil || !*m.SkipVerify {
		t.Errorf("mirror skip_verify = %v, want true", m.SkipVerify)
	}
	if want := []any{basic}; !reflect.DeepEqual(m.Header["Authorization"], want) {
		t.Errorf("mirror Authorization = %v, want %v", m.Header["Authorization"], want)
	}
	plain := docker.Host["http://10.0.0.1:5000"]
	if plain.CA != nil || plain.Client != nil || plain.SkipVerify != nil || plain.Header != nil {
		t.Errorf("the plain-HTTP endpoint got another host's settings: %+v", plain)
	}
	if docker.CA != nil || docker.Header != nil {
		t.Errorf("docker.io's own server got settings it has no config for: %+v", docker.hostTable)
	}

	def := readHosts(t, dir, "_default")
	if def.Server != "" {
		t.Errorf(`"*" mirror must leave server unset (the image's registry), got %q`, def.Server)
	}
	if !slices.Equal(def.order, []string{"https://fallback.example.com"}) {
		t.Errorf("_default hosts = %q", def.order)
	}

	// The configs key is a registry in its own right: pulling from it
	// directly gets its TLS and credentials at the top level.
	own := readHosts(t, dir, "mirror.example.com:5000")
	if own.Server != "https://mirror.example.com:5000" || len(own.Host) != 0 {
		t.Errorf("mirror.example.com:5000/hosts.toml: server %q, hosts %v", own.Server, own.order)
	}
	if own.CA != cert || own.SkipVerify == nil || !*own.SkipVerify || !reflect.DeepEqual(own.Header["Authorization"], []any{basic}) {
		t.Errorf("mirror.example.com:5000 top level = %+v", own.hostTable)
	}

	got, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(got) != 3 {
		t.Errorf("certs.d holds %q, want docker.io, _default and mirror.example.com:5000", got)
	}
	for _, name := range []string{"docker.io", "_default", "mirror.example.com:5000"} {
		checkMode(t, filepath.Join(dir, name), 0o700)
		checkMode(t, filepath.Join(dir, name, "hosts.toml"), 0o600)
		checkMode(t, filepath.Join(dir, name, markerFile), 0o600)
	}

	// The plain-HTTP endpoint has no credentials, so only the rewrite warns.
	if len(r.Warnings) != 1 || !strings.HasPrefix(r.Warnings[0], `registries.yaml line 6: mirrors."docker.io".rewrite is ignored`) {
		t.Errorf("warnings = %q, want one about the rewrite", r.Warnings)
	}
}

func checkMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != want {
		t.Errorf("%s mode = %o, want %o", path, fi.Mode().Perm(), want)
	}
}

// TestContainerdReadsIt loads the written directory with containerd's own
// hosts.toml loader, as the CRI image service does at pull time.
func TestContainerdReadsIt(t *testing.T) {
	r, _, _ := parseFull(t)
	dir := t.TempDir()
	if err := WriteHostsDir(dir, r); err != nil {
		t.Fatal(err)
	}
	hosts := ctdconfig.ConfigureHosts(context.Background(), ctdconfig.HostOptions{HostDir: ctdconfig.HostDirFromRoot(dir)})
	mirrorCaps := docker.HostCapabilityPull | docker.HostCapabilityResolve
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("u:p"))

	type want struct {
		scheme, host, path string
		caps               docker.HostCapabilities
		auth               string
		skipVerify         bool
	}
	check := func(image string, wants []want) {
		t.Helper()
		got, err := hosts(image)
		if err != nil {
			t.Fatalf("%s: %v", image, err)
		}
		if len(got) != len(wants) {
			t.Fatalf("%s: %d hosts, want %d: %+v", image, len(got), len(wants), got)
		}
		for i, w := range wants {
			g := got[i]
			if g.Scheme != w.scheme || g.Host != w.host || g.Path != w.path {
				t.Errorf("%s host %d = %s://%s%s, want %s://%s%s", image, i, g.Scheme, g.Host, g.Path, w.scheme, w.host, w.path)
			}
			if w.caps != 0 && g.Capabilities != w.caps {
				t.Errorf("%s host %d capabilities = %b, want %b", image, i, g.Capabilities, w.caps)
			}
			if a := http.Header(g.Header).Get("Authorization"); a != w.auth {
				t.Errorf("%s host %d Authorization = %q, want %q", image, i, a, w.auth)
			}
			tr, _ := g.Client.Transport.(*http.Transport)
			skip := tr != nil && tr.TLSClientConfig != nil && tr.TLSClientConfig.InsecureSkipVerify
			if skip != w.skipVerify {
				t.Errorf("%s host %d InsecureSkipVerify = %v, want %v", image, i, skip, w.skipVerify)
			}
			if w.skipVerify && len(tr.TLSClientConfig.Certificates) != 1 {
				t.Errorf("%s host %d has %d client certificates, want 1", image, i, len(tr.TLSClientConfig.Certificates))
			}
		}
	}
	check("docker.io", []want{
		{"https", "mirror.example.com:5000", "/v2", mirrorCaps, basic, true},
		{"http", "10.0.0.1:5000", "/v2", mirrorCaps, "", false},
		{"https", "registry-1.docker.io", "/v2", 0, "", false},
	})
	check("quay.io", []want{
		{"https", "fallback.example.com", "/v2", mirrorCaps, "", false},
		{"https", "quay.io", "/v2", 0, "", false},
	})
	check("mirror.example.com:5000", []want{
		{"https", "mirror.example.com:5000", "/v2", 0, basic, true},
	})
}

func TestEndpointPaths(t *testing.T) {
	src := `mirrors:
  docker.io:
    endpoint:
      - https://a.example/
      - https://b.example/v2
      - https://harbor.example/v2/dockerhub/
      - https://c.example/prefix
`
	r, err := Parse("registries.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteHostsDir(dir, r); err != nil {
		t.Fatal(err)
	}
	f := readHosts(t, dir, "docker.io")
	want := []string{"https://a.example", "https://b.example", "https://harbor.example/v2/dockerhub", "https://c.example/prefix"}
	if !slices.Equal(f.order, want) {
		t.Fatalf("hosts = %q, want %q", f.order, want)
	}
	for i, h := range want {
		if f.Host[h].OverridePath != (i >= 2) {
			t.Errorf("%s override_path = %v", h, f.Host[h].OverridePath)
		}
	}
	got, err := ctdconfig.ConfigureHosts(context.Background(), ctdconfig.HostOptions{HostDir: ctdconfig.HostDirFromRoot(dir)})("docker.io")
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{got[0].Path, got[1].Path, got[2].Path, got[3].Path}
	if wantPaths := []string{"/v2", "/v2", "/v2/dockerhub", "/prefix"}; !slices.Equal(paths, wantPaths) {
		t.Errorf("containerd API roots = %q, want %q", paths, wantPaths)
	}
}

func TestConfigOnlyRegistry(t *testing.T) {
	src := `configs:
  registry.local:5000:
    auth:
      auth: ` + base64.StdEncoding.EncodeToString([]byte("bob:s3:cret")) + `
  "http://plain.local:8080": {}
  "https://empty.example": {}
`
	r, err := Parse("registries.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteHostsDir(dir, r); err != nil {
		t.Fatal(err)
	}
	f := readHosts(t, dir, "registry.local:5000")
	if f.Server != "https://registry.local:5000" || len(f.Host) != 0 {
		t.Errorf("server %q, hosts %q", f.Server, f.order)
	}
	if want := []any{"Basic " + base64.StdEncoding.EncodeToString([]byte("bob:s3:cret"))}; !reflect.DeepEqual(f.Header["Authorization"], want) {
		t.Errorf("Authorization = %v, want %v", f.Header["Authorization"], want)
	}
	if p := readHosts(t, dir, "plain.local:8080"); p.Server != "http://plain.local:8080" {
		t.Errorf("an http:// configs key must make the server plain HTTP, got %q", p.Server)
	}
	if _, err := os.Stat(filepath.Join(dir, "empty.example")); !os.IsNotExist(err) {
		t.Errorf("a configs entry with no settings wrote a directory (err %v)", err)
	}
}

// Docker Hub has two names; configs for either reach both its server and
// an endpoint naming registry-1.docker.io.
func TestDockerHubAlias(t *testing.T) {
	src := `mirrors:
  docker.io:
    endpoint: ["https://m.example", "https://registry-1.docker.io"]
configs:
  registry-1.docker.io:
    auth: {username: hub, password: pw}
`
	r, err := Parse("registries.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteHostsDir(dir, r); err != nil {
		t.Fatal(err)
	}
	want := []any{"Basic " + base64.StdEncoding.EncodeToString([]byte("hub:pw"))}
	f := readHosts(t, dir, "docker.io")
	if !reflect.DeepEqual(f.Header["Authorization"], want) {
		t.Errorf("docker.io server Authorization = %v, want %v", f.Header["Authorization"], want)
	}
	if got := f.Host["https://registry-1.docker.io"].Header["Authorization"]; !reflect.DeepEqual(got, want) {
		t.Errorf("registry-1.docker.io endpoint Authorization = %v, want %v", got, want)
	}
	if f.Host["https://m.example"].Header != nil {
		t.Errorf("Docker Hub credentials leaked to the mirror m.example")
	}
	if got := listDir(t, dir); !slices.Equal(got, []string{"docker.io"}) {
		t.Errorf("certs.d holds %q, want only docker.io", got)
	}
}

func TestEndpointCredentialsNotEchoed(t *testing.T) {
	_, err := Parse("registries.yaml", []byte("mirrors:\n  docker.io:\n    endpoint: [\"https://u:hunter2@m.example\"]\n"))
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), `configs."m.example".auth`) {
		t.Fatalf("error = %v, want one pointing to configs without the password", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	r, err := Load(filepath.Join(t.TempDir(), "registries.yaml"))
	if r != nil || err != nil {
		t.Fatalf("Load(missing) = %v, %v; want nil, nil", r, err)
	}
}

func TestLoadNamesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registries.yaml")
	if err := os.WriteFile(path, []byte("mirrors:\n  docker.io:\n    endpoint: [ftp://x]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+" line 3: ") {
		t.Fatalf("error %v does not start with the path and line", err)
	}
}

func TestEmptyFile(t *testing.T) {
	for _, src := range []string{"", "# nothing yet\n", "---\n", "mirrors:\nconfigs:\n"} {
		r, err := Parse("registries.yaml", []byte(src))
		if err != nil || r == nil {
			t.Errorf("Parse(%q) = %v, %v; want an empty config", src, r, err)
			continue
		}
		files, _ := r.hostsFiles()
		if len(files) != 0 || len(r.Warnings) != 0 {
			t.Errorf("Parse(%q) yields files %v, warnings %q", src, files, r.Warnings)
		}
	}
}

func TestParseErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.pem")
	cases := []struct {
		name, src string
		want      []string // substrings of the error
	}{
		{"unknown key", "mirrors:\n  docker.io:\n    endpoints:\n      - https://m.example\n",
			[]string{`registries.yaml line 3:`, `unknown key "endpoints" under mirrors."docker.io"`, `did you mean "endpoint"?`}},
		{"unknown top key", "mirror:\n  docker.io: {}\n",
			[]string{`line 1:`, `unknown key "mirror" at the top level`, `"mirrors"`}},
		{"unknown key without a near match", "configs:\n  r.example:\n    tls:\n      verify: false\n",
			[]string{`line 4:`, `unknown key "verify" under configs."r.example".tls`, `known keys: ca_file, cert_file, key_file, insecure_skip_verify`}},
		{"bad scheme", "mirrors:\n  docker.io:\n    endpoint:\n      - https://ok.example\n      - ftp://m.example\n",
			[]string{`line 5:`, `mirrors."docker.io".endpoint[1]`, `"ftp://m.example"`, `https://`}},
		{"no scheme", "mirrors:\n  docker.io:\n    endpoint: [\"m.example:5000\"]\n",
			[]string{`line 3:`, `"m.example:5000" must start with https://`}},
		{"string for list", "mirrors:\n  docker.io:\n    endpoint: https://m.example\n",
			[]string{`line 3:`, `endpoint must be a list of URLs, got a string`, `["https://m.example"]`}},
		{"list for map", "mirrors:\n  - docker.io\n",
			[]string{`line 2:`, `mirrors must be a map, got a list`}},
		{"bool type", "configs:\n  r.example:\n    tls:\n      insecure_skip_verify: \"yes please\"\n",
			[]string{`line 4:`, `insecure_skip_verify must be true or false`}},
		{"missing ca_file", "configs:\n  r.example:\n    tls:\n      ca_file: " + missing + "\n",
			[]string{`line 4:`, `configs."r.example".tls.ca_file`, missing, `does not exist`}},
		{"relative ca_file", "configs:\n  r.example:\n    tls:\n      ca_file: ca.pem\n",
			[]string{`line 4:`, `"ca.pem" must be an absolute path`}},
		{"host with slash", "mirrors:\n  docker.io/library:\n    endpoint: [https://m.example]\n",
			[]string{`line 2:`, `"docker.io/library" is not a registry host`}},
		{"host with dotdot", "configs:\n  \"..\":\n    auth: {username: u}\n",
			[]string{`line 2:`, `".." is not a registry host`}},
		{"endpoint host traversal", "mirrors:\n  docker.io:\n    endpoint: [\"https://../x\"]\n",
			[]string{`line 3:`, `not a registry host`}},
		{"duplicate key", "mirrors:\n  docker.io: {}\n  docker.io: {}\n",
			[]string{`line 3:`, `"docker.io" appears twice under mirrors (first at line 2)`}},
		{"same registry twice", "configs:\n  r.example: {}\n  https://r.example: {}\n",
			[]string{`line 3:`, `names the same registry as "r.example" at line 2`}},
		{"bad auth", "configs:\n  r.example:\n    auth:\n      auth: not-base64!\n",
			[]string{`line 3:`, `configs."r.example".auth.auth must be the base64 of "username:password"`}},
		{"password alone", "configs:\n  r.example:\n    auth:\n      password: p\n",
			[]string{`line 3:`, `auth.password is set without auth.username`}},
		{"syntax", "mirrors:\n  docker.io: [\n", []string{`registries.yaml line `}},
		{"two documents", "mirrors: {}\n---\nconfigs: {}\n", []string{`second YAML document`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := Parse("registries.yaml", []byte(c.src))
			if err == nil {
				t.Fatalf("no error; parsed %+v", r)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestWarnings(t *testing.T) {
	src := `mirrors:
  docker.io:
    endpoint:
      - http://m.example:5000
      - http://m.example:5000/
    rewrite:
      "^library/(.*)": "mirrored/$1"
configs:
  m.example:5000:
    auth:
      identity_token: tok
  other.example:
    auth: {username: u, password: "0123"}
`
	r, err := Parse("registries.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`registries.yaml line 5: mirrors."docker.io".endpoint[1] "http://m.example:5000/" repeats an earlier endpoint`,
		`registries.yaml line 6: mirrors."docker.io".rewrite is ignored`,
		`registries.yaml line 10: configs."m.example:5000".auth.identity_token is ignored`,
	}
	if len(r.Warnings) != len(want) {
		t.Fatalf("warnings = %q, want %d", r.Warnings, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(r.Warnings[i], w) {
			t.Errorf("warning %d = %q, want it to start with %q", i, r.Warnings[i], w)
		}
	}
	if got := r.Configs["other.example"].Auth.Password; got != "0123" {
		t.Errorf("password 0123 read as %q; it must stay text", got)
	}
	if got := r.Mirrors["docker.io"].Rewrites["^library/(.*)"]; got != "mirrored/$1" {
		t.Errorf("rewrite kept as %q", got)
	}
}

func TestPlainHTTPCredentialsWarning(t *testing.T) {
	src := "mirrors:\n  docker.io:\n    endpoint: [\"http://m.example:5000\"]\nconfigs:\n  m.example:5000:\n    auth: {username: u, password: p}\n"
	r, err := Parse("registries.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "sent unencrypted") {
		t.Fatalf("warnings = %q, want one about credentials over plain HTTP", r.Warnings)
	}
}

func TestWriteHostsDirRemovesOnlyItsOwn(t *testing.T) {
	dir := t.TempDir()
	// A directory someone else made, for a registry k1s is not told about.
	userDir := filepath.Join(dir, "user.example")
	if err := os.MkdirAll(userDir, 0o755); err != nil {
		t.Fatal(err)
	}
	userFile := filepath.Join(userDir, "hosts.toml")
	if err := os.WriteFile(userFile, []byte("server = \"https://user.example\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	big, _, _ := parseFull(t)
	if err := WriteHostsDir(dir, big); err != nil {
		t.Fatal(err)
	}
	small, err := Parse("registries.yaml", []byte("mirrors:\n  docker.io:\n    endpoint: [\"https://only.example\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteHostsDir(dir, small); err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, dir); !slices.Equal(got, []string{"docker.io", "user.example"}) {
		t.Errorf("after the smaller config certs.d holds %q", got)
	}
	if f := readHosts(t, dir, "docker.io"); !slices.Equal(f.order, []string{"https://only.example"}) {
		t.Errorf("docker.io was not rewritten: hosts %q", f.order)
	}
	if data, err := os.ReadFile(userFile); err != nil || string(data) != "server = \"https://user.example\"\n" {
		t.Errorf("the user's file changed: %q, %v", data, err)
	}

	if err := WriteHostsDir(dir, nil); err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, dir); !slices.Equal(got, []string{"user.example"}) {
		t.Errorf("after nil certs.d holds %q, want only the user's directory", got)
	}
}

func TestWriteHostsDirRefusesUserDirectory(t *testing.T) {
	dir := t.TempDir()
	userFile := filepath.Join(dir, "docker.io", "hosts.toml")
	if err := os.MkdirAll(filepath.Dir(userFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(userFile, []byte("# mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Parse("registries.yaml", []byte("mirrors:\n  docker.io:\n    endpoint: [\"https://m.example\"]\n  quay.io:\n    endpoint: [\"https://q.example\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = WriteHostsDir(dir, r)
	if err == nil || !strings.Contains(err.Error(), "was not written by k1s") || !strings.Contains(err.Error(), filepath.Join(dir, "docker.io")) {
		t.Fatalf("error = %v, want one naming the user's docker.io directory", err)
	}
	if data, _ := os.ReadFile(userFile); string(data) != "# mine\n" {
		t.Errorf("the user's hosts.toml was overwritten: %q", data)
	}
	if got := listDir(t, dir); !slices.Equal(got, []string{"docker.io"}) {
		t.Errorf("a refused write still changed certs.d: %q", got)
	}
}

func TestWriteHostsDirNilOnMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs.d")
	if err := WriteHostsDir(dir, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("WriteHostsDir(nil) created %s", dir)
	}
}

func TestWriteHostsDirCleansInterruptedWrite(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, tmpPrefix+"123"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteHostsDir(dir, &Registries{}); err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, dir); len(got) != 0 {
		t.Errorf("certs.d still holds %q", got)
	}
}

// A hosts.toml write cut off by a crash leaves a temporary file in a
// directory k1s owns; the next write removes it.
func TestWriteHostsDirCleansInterruptedFileWrite(t *testing.T) {
	dir := t.TempDir()
	r, err := Parse("registries.yaml", []byte("mirrors:\n  docker.io:\n    endpoint: [\"https://m.example\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteHostsDir(dir, r); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "docker.io", ".hosts.toml.tmp-123")
	if err := os.WriteFile(stale, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteHostsDir(dir, r); err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, filepath.Join(dir, "docker.io")); !slices.Equal(got, []string{markerFile, hostsTOML}) {
		t.Errorf("docker.io holds %q, want only %s and %s", got, markerFile, hostsTOML)
	}
	if st, err := os.Stat(filepath.Join(dir, "docker.io", hostsTOML)); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("hosts.toml: %v, %v; want mode 0600", st, err)
	}
}

func TestTOMLString(t *testing.T) {
	for _, s := range []string{`plain`, `quo"te`, `back\slash`, "tab\tnew\nline\x01\x7f", "é✓", "bad\xffutf8"} {
		var got struct{ V string }
		if err := toml.Unmarshal([]byte("V = "+tomlString(s)+"\n"), &got); err != nil {
			t.Errorf("tomlString(%q) = %s: %v", s, tomlString(s), err)
			continue
		}
		if want := strings.ToValidUTF8(s, "\uFFFD"); got.V != want {
			t.Errorf("tomlString(%q) decodes to %q", s, got.V)
		}
	}
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
