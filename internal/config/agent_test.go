package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func validAgent(t *testing.T) *Agent {
	t.Helper()
	return &Agent{
		DataDir: t.TempDir(), ServerURL: "https://192.0.2.1:6443", Token: "K10abc::server:s3cret",
		NodeOptions: NodeOptions{NodeName: "edge-2", NodeIP: "192.0.2.20"},
	}
}

func prepareAgent(a *Agent) error {
	if err := a.Complete(); err != nil {
		return err
	}
	return a.Validate()
}

func TestAgentCompleteNormalizesServerURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://192.0.2.1":       "https://192.0.2.1:6443",
		"https://192.0.2.1/":      "https://192.0.2.1:6443",
		"https://server.lan:7443": "https://server.lan:7443",
		"https://[2001:db8::1]":   "https://[2001:db8::1]:6443",
	} {
		a := validAgent(t)
		a.ServerURL = in
		if err := prepareAgent(a); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if a.ServerURL != want {
			t.Errorf("ServerURL %q completed to %q, want %q", in, a.ServerURL, want)
		}
	}
}

func TestAgentRejects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(a *Agent)
		want   string
	}{
		{"no server", func(a *Agent) { a.ServerURL = "" }, "--server is required"},
		{"http", func(a *Agent) { a.ServerURL = "http://192.0.2.1:6443" }, "invalid --server"},
		{"path", func(a *Agent) { a.ServerURL = "https://192.0.2.1:6443/api" }, "invalid --server"},
		{"no token", func(a *Agent) { a.Token = "" }, "--token is required"},
		{"empty data dir", func(a *Agent) { a.DataDir = "" }, "--data-dir"},
		{"bad node ip", func(a *Agent) { a.NodeIP = "nope" }, "invalid --node-ip"},
		{"bad kubelet arg", func(a *Agent) { a.KubeletArgs = []string{"x"} }, "invalid --kubelet-arg"},
		{"lb port", func(a *Agent) { a.APIServerLBPort = 70000 }, "invalid --apiserver-lb-port 70000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := validAgent(t)
			tc.modify(a)
			if err := prepareAgent(a); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestAgentTokenFile(t *testing.T) {
	a := validAgent(t)
	a.Token = ""
	a.TokenFile = filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(a.TokenFile, []byte("K10x::server:y\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := prepareAgent(a); err != nil {
		t.Fatal(err)
	}
	if a.Token != "K10x::server:y" {
		t.Errorf("Token = %q", a.Token)
	}
	a = validAgent(t)
	a.TokenFile = filepath.Join(t.TempDir(), "token")
	if err := prepareAgent(a); err == nil || !strings.Contains(err.Error(), "--token and --token-file") {
		t.Errorf("both given: %v", err)
	}
}

// The node name comes from the hostname when it is not given, completed
// before anything runs.
func TestCompleteNamesTheNodeAfterTheHost(t *testing.T) {
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	a := validAgent(t)
	a.NodeName = ""
	if err := a.Complete(); err != nil {
		t.Fatal(err)
	}
	if a.NodeName != strings.ToLower(h) {
		t.Errorf("NodeName = %q, want the hostname %q lower-cased", a.NodeName, h)
	}
}

// Node is built from the agent's own options and the cluster's settings
// the server sent; nothing else fills it in later.
func TestAgentNode(t *testing.T) {
	a := validAgent(t)
	a.KubeProxyArgs = []string{"proxy-mode=nftables"}
	if err := prepareAgent(a); err != nil {
		t.Fatal(err)
	}
	c := Cluster{ClusterCIDR: "10.52.0.0/16", ServiceCIDR: "10.53.0.0/16", ClusterDNS: "10.53.0.10", ClusterDomain: "edge.local", FlannelBackend: "host-gw"}
	n := a.Node(c)
	if n.Cluster != c || n.NodeName != "edge-2" || n.NodeIP != "192.0.2.20" || n.APIServerURL != a.ServerURL || !n.NFTablesProxy() {
		t.Errorf("Node() = %+v", n)
	}
	if n.DataDir != a.DataDir || n.RunDir != DefaultRunDir {
		t.Errorf("Node() dirs %q %q", n.DataDir, n.RunDir)
	}
}

func TestServerNode(t *testing.T) {
	s := validServer(t)
	s.BindAddress = "192.0.2.10"
	s.NodeLabels = []string{"tier=edge"}
	if err := prepare(s); err != nil {
		t.Fatal(err)
	}
	n := s.Node()
	if n.Cluster != s.Cluster || n.NodeName != "edge-1" || n.NodeIP != "192.0.2.10" || n.APIServerURL != "https://192.0.2.10:6443" || n.NodeLabels[0] != "tier=edge" {
		t.Errorf("Node() = %+v", n)
	}
}

func TestClusterValidateNamesServerFlags(t *testing.T) {
	c := Cluster{ClusterCIDR: DefaultClusterCIDR, ServiceCIDR: DefaultServiceCIDR, ClusterDNS: DefaultClusterDNS, ClusterDomain: DefaultClusterDomain, FlannelBackend: "vxlan"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.FlannelBackend = ""
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--flannel-backend") {
		t.Errorf("empty backend: %v", err)
	}
}

// With --disable-agent the node flags are neither completed nor checked.
func TestDisableAgentSkipsNodeOptions(t *testing.T) {
	s := validServer(t)
	s.DisableAgent = true
	s.NodeName = ""
	if err := prepare(s); err != nil {
		t.Fatal(err)
	}
	if s.NodeName != "" || s.NodeIP != "" {
		t.Errorf("node options filled in without a node: %q %q", s.NodeName, s.NodeIP)
	}
}

// Node flags given with --disable-agent are still checked: bad input is
// refused, not ignored.
func TestDisableAgentStillChecksGivenNodeFlags(t *testing.T) {
	s := validServer(t)
	s.DisableAgent = true
	s.NodeName = ""
	s.KubeletArgs = []string{"max-pods"}
	if err := prepare(s); err == nil || !strings.Contains(err.Error(), "invalid --kubelet-arg") {
		t.Errorf("prepare() = %v, want the --kubelet-arg named", err)
	}
}
