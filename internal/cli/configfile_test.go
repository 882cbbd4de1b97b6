package cli

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/k1s-io/k1s/internal/config"
	"github.com/k1s-io/k1s/internal/pki"
)

// runServer runs a `server` command built from serverFlags with args, doing
// what serverCommand's Action does before Validate: apply the config file and
// collect the list flags. It returns the filled config.
func runServer(t *testing.T, args ...string) (*config.Server, error) {
	t.Helper()
	cfg := &config.Server{}
	flags := serverFlags(cfg)
	ran := false
	app := &cli.App{
		Name:                      "k1s",
		Writer:                    io.Discard,
		ErrWriter:                 io.Discard,
		DisableSliceFlagSeparator: newApp(io.Discard, io.Discard).DisableSliceFlagSeparator,
		Commands: []*cli.Command{{
			Name:  "server",
			Flags: flags.flags,
			Action: func(c *cli.Context) error {
				ran = true
				return load(c, cfg.ConfigFile, flags)
			},
		}},
	}
	err := app.Run(append([]string{"k1s", "server"}, args...))
	if err == nil && !ran {
		t.Fatalf("server action did not run for args %q", args)
	}
	return cfg, err
}

// writeConfig writes a config file into a temp dir and returns its path.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEnvName(t *testing.T) {
	for flag, want := range map[string]string{
		"data-dir":                     "K1S_DATA_DIR",
		"debug":                        "K1S_DEBUG",
		"kube-controller-manager-port": "K1S_KUBE_CONTROLLER_MANAGER_PORT",
		"tls-san":                      "K1S_TLS_SAN",
	} {
		if got := envName(flag); got != want {
			t.Errorf("envName(%q) = %q, want %q", flag, got, want)
		}
	}
}

func TestEveryServerFlagHasItsEnvVar(t *testing.T) {
	b := serverFlags(&config.Server{})
	if len(b.flags) == 0 {
		t.Fatal("serverFlags declared no flags")
	}
	for _, f := range b.flags {
		name := f.Names()[0]
		d, ok := f.(cli.DocGenerationFlag)
		if !ok {
			t.Fatalf("flag %s does not expose its environment variables", name)
		}
		if got := d.GetEnvVars(); !slices.Equal(got, []string{envName(name)}) {
			t.Errorf("flag %s: env vars %q, want [%s]", name, got, envName(name))
		}
	}
}

func TestParseConfigScalarsAndLists(t *testing.T) {
	entries, err := parseConfig([]byte(`# k1s config
data-dir: /srv/k1s
write-kubeconfig-mode: 0644
https-listen-port: 7443
debug: true
token: "quoted: value"
empty-string: ""
tls-san:
  - k1s.example.com
  - 203.0.113.7
kube-apiserver-arg: [v=2, "audit-log-maxage=30"]
`))
	if err != nil {
		t.Fatalf("parseConfig: %v", err)
	}
	want := []configEntry{
		{key: "data-dir", line: 2, values: []string{"/srv/k1s"}},
		{key: "write-kubeconfig-mode", line: 3, values: []string{"0644"}},
		{key: "https-listen-port", line: 4, values: []string{"7443"}},
		{key: "debug", line: 5, values: []string{"true"}},
		{key: "token", line: 6, values: []string{"quoted: value"}},
		{key: "empty-string", line: 7, values: []string{""}},
		{key: "tls-san", line: 8, values: []string{"k1s.example.com", "203.0.113.7"}},
		{key: "kube-apiserver-arg", line: 11, values: []string{"v=2", "audit-log-maxage=30"}},
	}
	if len(entries) != len(want) {
		t.Fatalf("parseConfig returned %d entries %+v, want %d", len(entries), entries, len(want))
	}
	for i, w := range want {
		g := entries[i]
		if g.key != w.key || g.line != w.line || !slices.Equal(g.values, w.values) {
			t.Errorf("entry %d = %+v, want %+v", i, g, w)
		}
	}
}

func TestParseConfigEmpty(t *testing.T) {
	for _, in := range []string{"", "\n\n", "# only a comment\n"} {
		entries, err := parseConfig([]byte(in))
		if err != nil || len(entries) != 0 {
			t.Errorf("parseConfig(%q) = %+v, %v; want no entries and no error", in, entries, err)
		}
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"syntax error", "data-dir: /x\ntls-san: [a, b\n", []string{"not valid YAML", "line"}},
		{"bad indentation", "data-dir: /x\n  debug: true\n", []string{"not valid YAML"}},
		{"tab indentation", "tls-san:\n\t- a\n", []string{"not valid YAML"}},
		{"top-level list", "- data-dir\n- debug\n", []string{"line 1", "want a mapping"}},
		{"top-level scalar", "just text\n", []string{"want a mapping"}},
		{"null value", "data-dir: /x\ntoken:\n", []string{"line 2", `"token"`, "no value"}},
		{"tilde value", "token: ~\n", []string{"line 1", "no value"}},
		{"nested mapping", "data-dir: /x\ndatastore:\n  endpoint: x\n", []string{"line 3", `"datastore"`, "value or a list"}},
		{"list of mappings", "tls-san:\n  - a\n  - name: b\n", []string{"line 3", `"tls-san"`, "plain values"}},
		{"nested list", "tls-san:\n  - [a, b]\n", []string{"line 2", "plain values"}},
		{"duplicate key", "debug: true\ndata-dir: /a\ndata-dir: /b\n", []string{"line 3", `"data-dir"`, "twice"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig([]byte(tc.in))
			if err == nil {
				t.Fatalf("parseConfig(%q) = nil error, want one containing %q", tc.in, tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("parseConfig(%q) error %q does not contain %q", tc.in, err, w)
				}
			}
		})
	}
}

func TestApplyConfigFileSetsFlags(t *testing.T) {
	path := writeConfig(t, `data-dir: /srv/k1s
write-kubeconfig-mode: 0644
https-listen-port: 7443
debug: true
disable-agent: true
datastore-connect-timeout: 45s
datastore-compact-min-retain: 5
cluster-domain: corp.internal
tls-san:
  - k1s.example.com
  - 203.0.113.7
kube-apiserver-arg: v=2
kube-scheduler-arg: [v=3, "leader-elect-lease-duration=20s"]
`)
	cfg, err := runServer(t, "--config", path)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if cfg.ConfigFile != path {
		t.Errorf("ConfigFile = %q, want %q", cfg.ConfigFile, path)
	}
	if cfg.DataDir != "/srv/k1s" {
		t.Errorf("DataDir = %q", cfg.DataDir)
	}
	if cfg.WriteKubeconfigMode != "0644" {
		t.Errorf("WriteKubeconfigMode = %q, want the literal 0644", cfg.WriteKubeconfigMode)
	}
	if cfg.HTTPSPort != 7443 {
		t.Errorf("HTTPSPort = %d", cfg.HTTPSPort)
	}
	if !cfg.Debug || !cfg.DisableAgent {
		t.Errorf("Debug = %v, DisableAgent = %v; want both true", cfg.Debug, cfg.DisableAgent)
	}
	if cfg.Datastore.ConnectTimeout != 45*time.Second {
		t.Errorf("ConnectTimeout = %v", cfg.Datastore.ConnectTimeout)
	}
	if cfg.Datastore.CompactMinRetain != 5 {
		t.Errorf("CompactMinRetain = %d", cfg.Datastore.CompactMinRetain)
	}
	if cfg.ClusterDomain != "corp.internal" {
		t.Errorf("ClusterDomain = %q", cfg.ClusterDomain)
	}
	if want := []string{"k1s.example.com", "203.0.113.7"}; !slices.Equal(cfg.TLSSANs, want) {
		t.Errorf("TLSSANs = %q, want %q", cfg.TLSSANs, want)
	}
	if want := []string{"v=2"}; !slices.Equal(cfg.ExtraAPIServerArgs, want) {
		t.Errorf("ExtraAPIServerArgs = %q, want %q", cfg.ExtraAPIServerArgs, want)
	}
	if want := []string{"v=3", "leader-elect-lease-duration=20s"}; !slices.Equal(cfg.ExtraSchedulerArgs, want) {
		t.Errorf("ExtraSchedulerArgs = %q, want %q", cfg.ExtraSchedulerArgs, want)
	}
	// Keys absent from the file keep their defaults.
	if cfg.ServiceCIDR != config.DefaultServiceCIDR || cfg.SchedulerPort != config.DefaultSchedulerPort {
		t.Errorf("defaults lost: ServiceCIDR %q, SchedulerPort %d", cfg.ServiceCIDR, cfg.SchedulerPort)
	}
	if cfg.ExtraControllerManagerArgs != nil && len(cfg.ExtraControllerManagerArgs) != 0 {
		t.Errorf("ExtraControllerManagerArgs = %q, want none", cfg.ExtraControllerManagerArgs)
	}
}

func TestApplyConfigFileAcceptsAliases(t *testing.T) {
	path := writeConfig(t, "d: /srv/alias\no: /tmp/k1s.yaml\n")
	cfg, err := runServer(t, "--config", path)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if cfg.DataDir != "/srv/alias" || cfg.WriteKubeconfig != "/tmp/k1s.yaml" {
		t.Errorf("DataDir = %q, WriteKubeconfig = %q; want the aliased values", cfg.DataDir, cfg.WriteKubeconfig)
	}
}

func TestApplyConfigFileRefusesUnknownKey(t *testing.T) {
	path := writeConfig(t, "data-dir: /srv/k1s\n# comment\nbogus-key: 1\n")
	cfg, err := runServer(t, "--config", path)
	if err == nil {
		t.Fatal("unknown key accepted")
	}
	for _, w := range []string{path, "line 3", `"bogus-key"`, "unknown key"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
	// Nothing from a refused file is applied, not even the valid keys before it.
	if cfg.DataDir != config.DefaultDataDir {
		t.Errorf("DataDir = %q after a refused file, want the default", cfg.DataDir)
	}
}

func TestApplyConfigFileRefusesConfigKey(t *testing.T) {
	path := writeConfig(t, "config: /etc/other.yaml\n")
	_, err := runServer(t, "--config", path)
	if err == nil || !strings.Contains(err.Error(), `unknown key "config"`) || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("err = %v, want the config key refused at line 1", err)
	}
}

func TestApplyConfigFileReportsSyntaxErrors(t *testing.T) {
	path := writeConfig(t, "data-dir: /x\ntls-san: [a, b\n")
	_, err := runServer(t, "--config", path)
	if err == nil {
		t.Fatal("broken YAML accepted")
	}
	for _, w := range []string{path, "not valid YAML", "--config"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}

func TestApplyConfigFileBadValueNamesLine(t *testing.T) {
	path := writeConfig(t, "debug: true\nhttps-listen-port: lots\n")
	_, err := runServer(t, "--config", path)
	if err == nil {
		t.Fatal("bad port accepted")
	}
	for _, w := range []string{"line 2", `"lots"`, "https-listen-port"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}

func TestApplyConfigFileMissing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "absent.yaml")

	// Named explicitly (flag or env): a missing file is an error.
	if _, err := runServer(t, "--config", missing); err == nil || !strings.Contains(err.Error(), "config file") {
		t.Errorf("explicit missing --config: err = %v, want a config file error", err)
	}
	t.Run("env", func(t *testing.T) {
		t.Setenv("K1S_CONFIG", missing)
		if _, err := runServer(t); err == nil {
			t.Error("missing file named by K1S_CONFIG accepted")
		}
	})

	// Not named: a missing default file is fine.
	cfg := &config.Server{}
	flags := serverFlags(cfg)
	var got error
	app := &cli.App{Writer: io.Discard, ErrWriter: io.Discard, Commands: []*cli.Command{{
		Name: "server", Flags: flags.flags,
		Action: func(c *cli.Context) error {
			got = applyConfigFile(c, missing, false)
			return nil
		},
	}}}
	if err := app.Run([]string{"k1s", "server"}); err != nil {
		t.Fatal(err)
	}
	if got != nil {
		t.Errorf("implicit missing config file: %v, want nil", got)
	}
}

func TestPrecedence(t *testing.T) {
	path := writeConfig(t, "data-dir: /from-file\nwrite-kubeconfig-mode: 0644\ntls-san: [file.example.com]\n")
	for _, tc := range []struct {
		name    string
		env     map[string]string
		args    []string
		dataDir string
		mode    string
		sans    []string
	}{
		{name: "file over default", dataDir: "/from-file", mode: "0644", sans: []string{"file.example.com"}},
		{name: "env over file",
			env:     map[string]string{"K1S_DATA_DIR": "/from-env", "K1S_TLS_SAN": "env.example.com"},
			dataDir: "/from-env", mode: "0644", sans: []string{"env.example.com"}},
		{name: "flag over env and file",
			env:     map[string]string{"K1S_DATA_DIR": "/from-env", "K1S_WRITE_KUBECONFIG_MODE": "0640"},
			args:    []string{"--data-dir", "/from-flag", "--tls-san", "flag.example.com"},
			dataDir: "/from-flag", mode: "0640", sans: []string{"flag.example.com"}},
		{name: "alias flag over file", args: []string{"-d", "/from-alias"},
			dataDir: "/from-alias", mode: "0644", sans: []string{"file.example.com"}},
		{name: "repeated list flag replaces the file list",
			args:    []string{"--tls-san", "a.example.com", "--tls-san", "203.0.113.9"},
			dataDir: "/from-file", mode: "0644", sans: []string{"a.example.com", "203.0.113.9"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cfg, err := runServer(t, append([]string{"--config", path}, tc.args...)...)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if cfg.DataDir != tc.dataDir {
				t.Errorf("DataDir = %q, want %q", cfg.DataDir, tc.dataDir)
			}
			if cfg.WriteKubeconfigMode != tc.mode {
				t.Errorf("WriteKubeconfigMode = %q, want %q", cfg.WriteKubeconfigMode, tc.mode)
			}
			if !slices.Equal(cfg.TLSSANs, tc.sans) {
				t.Errorf("TLSSANs = %q, want %q", cfg.TLSSANs, tc.sans)
			}
		})
	}
}

func TestDefaultsWithoutFileEnvOrFlag(t *testing.T) {
	path := writeConfig(t, "# nothing set\n")
	cfg, err := runServer(t, "--config", path)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if cfg.DataDir != config.DefaultDataDir || cfg.WriteKubeconfigMode != config.DefaultKubeconfigMode ||
		cfg.HTTPSPort != config.DefaultHTTPSPort || cfg.BindAddress != "0.0.0.0" ||
		cfg.Datastore.ConnectTimeout != config.DefaultDatastoreWait || cfg.Debug || len(cfg.TLSSANs) != 0 {
		t.Errorf("defaults not applied: %+v", cfg)
	}
}

func TestConfigFileFromEnv(t *testing.T) {
	path := writeConfig(t, "cluster-dns: 10.43.0.53\n")
	t.Setenv("K1S_CONFIG", path)
	cfg, err := runServer(t)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if cfg.ClusterDNS != "10.43.0.53" {
		t.Errorf("ClusterDNS = %q, want the value from the file named by K1S_CONFIG", cfg.ClusterDNS)
	}
}

// A comma inside a component argument belongs to its value.
func TestListFlagsKeepCommas(t *testing.T) {
	file := writeConfig(t, "kube-apiserver-arg:\n  - enable-admission-plugins=NodeRestriction,PodSecurity\n")
	cfg, err := runServer(t, "--config", file, "--kube-scheduler-arg=feature-gates=A=true,B=false")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"enable-admission-plugins=NodeRestriction,PodSecurity"}; !slices.Equal(cfg.ExtraAPIServerArgs, want) {
		t.Errorf("from file: %q, want %q", cfg.ExtraAPIServerArgs, want)
	}
	if want := []string{"feature-gates=A=true,B=false"}; !slices.Equal(cfg.ExtraSchedulerArgs, want) {
		t.Errorf("from flag: %q, want %q", cfg.ExtraSchedulerArgs, want)
	}
}

func TestConfigFileRefusesSecondDocument(t *testing.T) {
	file := writeConfig(t, "data-dir: /a\n---\ndebug: true\n")
	if _, err := runServer(t, "--config", file); err == nil || !strings.Contains(err.Error(), "more than one YAML document") {
		t.Fatalf("err = %v, want a refusal of the second document", err)
	}
}

func TestConfigFileRefusesConfigAlias(t *testing.T) {
	file := writeConfig(t, "c: /other.yaml\n")
	if _, err := runServer(t, "--config", file); err == nil || !strings.Contains(err.Error(), `unknown key "c"`) {
		t.Fatalf("err = %v, want the alias of --config refused", err)
	}
}

// `k1s snapshot save` on a data dir with embedded etcd takes an etcd
// snapshot from the running member: with none running it says so, rather
// than that no SQLite database is there.
func TestSnapshotSaveOnEtcdDataDir(t *testing.T) {
	if c, err := net.DialTimeout("tcp", "127.0.0.1:2379", time.Second); err == nil {
		c.Close()
		t.Skip("something listens on 127.0.0.1:2379 on this machine")
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "server", "db", "etcd", "member"), 0o700); err != nil {
		t.Fatal(err)
	}
	err := newApp(io.Discard, io.Discard).Run([]string{"k1s", "snapshot", "save", "--data-dir", dir})
	if err == nil || !strings.Contains(err.Error(), "start the server: an etcd snapshot is taken from the running member") ||
		!strings.Contains(err.Error(), "https://127.0.0.1:2379") {
		t.Fatalf("snapshot save on an etcd data dir = %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "server", "snapshots", "*")); len(left) > 0 {
		t.Errorf("a refused save left %v", left)
	}
}

// `k1s certificate check` lists the embedded etcd member's certificates
// too: they expire like the others.
func TestCertificateCheckListsEtcd(t *testing.T) {
	dir := t.TempDir()
	etcdTLS := filepath.Join(dir, "server", "tls", "etcd")
	if _, err := pki.EnsureEtcd(pki.EtcdFiles{Dir: etcdTLS}, net.ParseIP("192.0.2.7"), time.Now()); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := newApp(&out, io.Discard).Run([]string{"k1s", "certificate", "check", "-o", "json", "--data-dir", dir}); err != nil {
		t.Fatalf("certificate check: %v\n%s", err, out.String())
	}
	for _, f := range []string{"server-ca.crt", "peer-ca.crt", "serving.crt", "client.crt", "peer.crt"} {
		if !strings.Contains(out.String(), filepath.Join(etcdTLS, f)) {
			t.Errorf("certificate check does not list %s:\n%s", f, out.String())
		}
	}
}
