package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// validServer is a configuration Complete and Validate accept, as the
// flags' defaults give it; each test breaks one field.
func validServer(t *testing.T) *Server {
	t.Helper()
	return &Server{
		DataDir:          t.TempDir(),
		BindAddress:      DefaultBindAddress,
		HTTPSPort:        DefaultHTTPSPort,
		AdvertiseAddress: "192.0.2.10",
		Cluster: Cluster{
			ClusterCIDR:    DefaultClusterCIDR,
			ServiceCIDR:    DefaultServiceCIDR,
			ClusterDNS:     DefaultClusterDNS,
			ClusterDomain:  DefaultClusterDomain,
			FlannelBackend: DefaultFlannelBackend,
		},
		SchedulerPort:  DefaultSchedulerPort,
		ControllerPort: DefaultControllerPort,
		Datastore:      Datastore{ConnectTimeout: DefaultDatastoreWait, CompactBatchSize: DefaultCompactBatch},
		Snapshots:      Snapshots{Schedule: DefaultSnapshotSchedule, Retention: DefaultSnapshotRetention},
		NodeOptions:    NodeOptions{NodeName: "edge-1"},
	}
}

// prepare is what the CLI does: Complete, then Validate.
func prepare(s *Server) error {
	if err := s.Complete(); err != nil {
		return err
	}
	return s.Validate()
}

func TestValidateAcceptsValidConfig(t *testing.T) {
	s := validServer(t)
	if err := prepare(s); err != nil {
		t.Fatalf("Complete+Validate = %v, want nil", err)
	}
	if s.WriteKubeconfigMode != DefaultKubeconfigMode {
		t.Errorf("empty WriteKubeconfigMode became %q, want the default %q", s.WriteKubeconfigMode, DefaultKubeconfigMode)
	}
	if got := s.KubeconfigMode(); got != 0o600 {
		t.Errorf("KubeconfigMode() = %o, want 600", got)
	}
	if s.AdvertiseAddress != "192.0.2.10" {
		t.Errorf("AdvertiseAddress changed to %q", s.AdvertiseAddress)
	}
	if s.NodeIP != "192.0.2.10" {
		t.Errorf("NodeIP = %q, want the advertise address", s.NodeIP)
	}
}

// Validate reports and never repairs: a completed config passes through
// it unchanged.
func TestValidateChangesNothing(t *testing.T) {
	s := validServer(t)
	s.Disable = []string{"coredns,servicelb"}
	if err := s.Complete(); err != nil {
		t.Fatal(err)
	}
	before := fmt.Sprintf("%#v", *s)
	if err := prepare(s); err != nil {
		t.Fatal(err)
	}
	if after := fmt.Sprintf("%#v", *s); after != before {
		t.Errorf("Validate changed the config:\nbefore %s\nafter  %s", before, after)
	}
	// An incomplete config is refused, not filled in.
	s = validServer(t)
	if err := s.Complete(); err != nil {
		t.Fatal(err)
	}
	s.WriteKubeconfigMode = ""
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "--write-kubeconfig-mode") {
		t.Errorf("Validate() of an incomplete config = %v, want a --write-kubeconfig-mode error", err)
	}
}

func TestValidateRejects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(s *Server)
		want   []string // substrings of the error
	}{
		{"empty data dir", func(s *Server) { s.DataDir = "" }, []string{"--data-dir"}},
		{"unknown flannel backend", func(s *Server) { s.FlannelBackend = "wireguard" }, []string{"--flannel-backend", `"wireguard"`, "vxlan, host-gw, none"}},
		{"unknown add-on", func(s *Server) { s.Disable = []string{"coredns,grafana"} }, []string{"--disable", `"grafana"`, "coredns, servicelb, ingress, metrics-server, local-storage, helm-controller and dashboard"}},
		{"storage root /", func(s *Server) { s.DefaultLocalStoragePath = "/" }, []string{"--default-local-storage-path", `"/"`}},
		{"registry with scheme", func(s *Server) { s.SystemDefaultRegistry = "https://r.example" }, []string{"--system-default-registry", "without scheme"}},
		{"registry with slash", func(s *Server) { s.SystemDefaultRegistry = "r.example/" }, []string{"--system-default-registry"}},
		{"bad bind address", func(s *Server) { s.BindAddress = "localhost" }, []string{"--bind-address", `"localhost"`}},
		{"port zero", func(s *Server) { s.HTTPSPort = 0 }, []string{"--https-listen-port", "0"}},
		{"port too large", func(s *Server) { s.SchedulerPort = 65536 }, []string{"--kube-scheduler-port", "65536"}},
		{"controller port", func(s *Server) { s.ControllerPort = -1 }, []string{"--kube-controller-manager-port", "-1"}},

		{"cluster cidr syntax", func(s *Server) { s.ClusterCIDR = "10.42.0.0" }, []string{"invalid --cluster-cidr", `"10.42.0.0"`, "CIDR"}},
		{"cluster cidr garbage", func(s *Server) { s.ClusterCIDR = "ten.42/16" }, []string{"invalid --cluster-cidr"}},
		{"cluster cidr bad prefix", func(s *Server) { s.ClusterCIDR = "10.42.0.0/33" }, []string{"invalid --cluster-cidr"}},
		{"cluster cidr host bits", func(s *Server) { s.ClusterCIDR = "10.42.1.0/16" }, []string{"--cluster-cidr", "host bits are set", "10.42.0.0/16"}},
		{"service cidr syntax", func(s *Server) { s.ServiceCIDR = "10.43.0.0/" }, []string{"invalid --service-cidr"}},
		{"service cidr host bits", func(s *Server) { s.ServiceCIDR = "10.43.0.1/16" }, []string{"--service-cidr", "host bits are set", "10.43.0.0/16"}},
		{"service cidr empty", func(s *Server) { s.ServiceCIDR = "" }, []string{"invalid --service-cidr"}},

		{"identical cidrs", func(s *Server) { s.ServiceCIDR = "10.42.0.0/16"; s.ClusterDNS = "10.42.0.10" }, []string{"overlap"}},
		{"service inside cluster", func(s *Server) { s.ClusterCIDR = "10.0.0.0/8" }, []string{"overlap", "10.0.0.0/8", "10.43.0.0/16"}},
		{"cluster inside service", func(s *Server) {
			s.ClusterCIDR = "10.43.128.0/17"
		}, []string{"overlap"}},
		{"service cidr too large", func(s *Server) {
			s.ClusterCIDR = "192.168.0.0/16"
			s.ServiceCIDR = "10.0.0.0/11"
		}, []string{"--service-cidr", "too large", "/12"}},

		{"cluster dns outside service cidr", func(s *Server) { s.ClusterDNS = "10.42.0.10" }, []string{"--cluster-dns", "outside", "10.43.0.0/16"}},
		{"cluster dns not an IP", func(s *Server) { s.ClusterDNS = "dns.local" }, []string{"invalid --cluster-dns"}},
		{"empty cluster domain", func(s *Server) { s.ClusterDomain = "" }, []string{"--cluster-domain"}},

		{"mode 999", func(s *Server) { s.WriteKubeconfigMode = "999" }, []string{"--write-kubeconfig-mode", `"999"`}},
		{"mode abc", func(s *Server) { s.WriteKubeconfigMode = "abc" }, []string{"--write-kubeconfig-mode", `"abc"`}},
		{"mode above 0777", func(s *Server) { s.WriteKubeconfigMode = "1777" }, []string{"--write-kubeconfig-mode"}},
		{"mode negative", func(s *Server) { s.WriteKubeconfigMode = "-600" }, []string{"--write-kubeconfig-mode"}},
		{"mode 0o prefix", func(s *Server) { s.WriteKubeconfigMode = "0o644" }, []string{"--write-kubeconfig-mode"}},

		{"advertise loopback v4", func(s *Server) { s.AdvertiseAddress = "127.0.0.1" }, []string{"--advertise-address", "loopback"}},
		{"advertise loopback other", func(s *Server) { s.AdvertiseAddress = "127.0.1.1" }, []string{"--advertise-address", "loopback"}},
		{"advertise loopback v6", func(s *Server) { s.AdvertiseAddress = "::1" }, []string{"--advertise-address", "loopback"}},
		{"advertise unspecified", func(s *Server) { s.AdvertiseAddress = "0.0.0.0" }, []string{"--advertise-address", "unspecified"}},
		{"advertise not an IP", func(s *Server) { s.AdvertiseAddress = "myhost" }, []string{"invalid --advertise-address", `"myhost"`}},

		{"token and token file", func(s *Server) {
			s.Token = "secret"
			s.TokenFile = filepath.Join(s.DataDir, "token")
			if err := os.WriteFile(s.TokenFile, []byte("other\n"), 0o600); err != nil {
				panic(err)
			}
		}, []string{"--token and --token-file"}},
		{"token file missing", func(s *Server) { s.TokenFile = filepath.Join(s.DataDir, "nope") }, []string{"reading --token-file"}},

		{"component arg empty", func(s *Server) { s.ExtraAPIServerArgs = []string{"v=2", ""} }, []string{"invalid --kube-apiserver-arg"}},
		{"component arg without key", func(s *Server) { s.ExtraSchedulerArgs = []string{"=2"} }, []string{"invalid --kube-scheduler-arg", `"=2"`}},
		{"kubelet arg", func(s *Server) { s.KubeletArgs = []string{"max-pods"} }, []string{"invalid --kubelet-arg", `"max-pods"`}},
		{"kube-proxy arg", func(s *Server) { s.KubeProxyArgs = []string{"--=x"} }, []string{"invalid --kube-proxy-arg"}},
		{"node name", func(s *Server) { s.NodeName = "Edge_1" }, []string{"invalid --node-name", `"Edge_1"`}},
		{"node name too long", func(s *Server) {
			s.NodeName = strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 50)
		}, []string{"--node-name", "242 characters", "at most 235"}},
		{"node ip", func(s *Server) { s.NodeIP = "0.0.0.0" }, []string{"invalid --node-ip", `"0.0.0.0"`}},
		{"node label", func(s *Server) { s.NodeLabels = []string{"novalue"} }, []string{"invalid --node-label", "key=value"}},
		{"node taint effect", func(s *Server) { s.NodeTaints = []string{"a=b:Sometimes"} }, []string{"invalid --node-taint", `"Sometimes"`}},
		{"compact batch", func(s *Server) { s.Datastore.CompactBatchSize = 99 }, []string{"--datastore-compact-batch-size 99", "at least 100"}},
		{"connect timeout zero", func(s *Server) { s.Datastore.ConnectTimeout = 0 }, []string{"--datastore-connect-timeout"}},
		{"negative retain", func(s *Server) { s.Datastore.CompactMinRetain = -1 }, []string{"--datastore-compact-min-retain"}},
		{"snapshot schedule", func(s *Server) { s.Snapshots.Schedule = "every day" }, []string{`invalid --snapshot-schedule "every day"`, "@every 6h"}},
		{"snapshot retention", func(s *Server) { s.Snapshots.Retention = 0 }, []string{"invalid --snapshot-retention 0", "--disable-snapshots"}},
		{"reset without path", func(s *Server) { s.Snapshots.ClusterReset = true }, []string{"--cluster-reset needs --cluster-reset-restore-path"}},
		{"path without reset", func(s *Server) { s.Snapshots.RestorePath = "/x.db" }, []string{"--cluster-reset-restore-path needs --cluster-reset"}},
		{"restore missing file", func(s *Server) { s.Snapshots.ClusterReset, s.Snapshots.RestorePath = true, "/nonexistent/x.db" }, []string{"--cluster-reset-restore-path", "no such file"}},
		{"restore on postgres", func(s *Server) {
			s.Snapshots.ClusterReset, s.Snapshots.RestorePath, s.Datastore.Endpoint = true, "/x.db", "postgres://u:pw@db/k1s"
		}, []string{"pg_restore", "postgres://…"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := validServer(t)
			tc.modify(s)
			err := prepare(s)
			if err == nil {
				t.Fatalf("Validate() = nil, want an error containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestValidateAcceptsBoundaries(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(s *Server)
	}{
		{"service cidr /12 is the largest allowed", func(s *Server) {
			s.ClusterCIDR = "192.168.0.0/16"
			s.ServiceCIDR = "10.96.0.0/12"
			s.ClusterDNS = "10.96.0.10"
		}},
		{"adjacent cidrs", func(s *Server) {
			s.ClusterCIDR = "10.42.0.0/16"
			s.ServiceCIDR = "10.43.0.0/16"
		}},
		{"mode 0644", func(s *Server) { s.WriteKubeconfigMode = "0644" }},
		{"mode without leading zero", func(s *Server) { s.WriteKubeconfigMode = "640" }},
		{"ipv6 service cidr", func(s *Server) {
			s.ServiceCIDR = "fd00:43::/112"
			s.ClusterDNS = "fd00:43::a"
		}},
		{"component args", func(s *Server) {
			s.ExtraAPIServerArgs = []string{"v=2", "--feature-gates=A=true"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := validServer(t)
			tc.modify(s)
			if err := prepare(s); err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
		})
	}
}

func TestKubeconfigModeParsesOctal(t *testing.T) {
	for in, want := range map[string]os.FileMode{"0644": 0o644, "0600": 0o600, "640": 0o640, "0400": 0o400} {
		s := validServer(t)
		s.WriteKubeconfigMode = in
		if err := prepare(s); err != nil {
			t.Fatalf("Validate(mode %q) = %v", in, err)
		}
		if s.WriteKubeconfigMode != in {
			t.Errorf("Validate rewrote mode %q to %q", in, s.WriteKubeconfigMode)
		}
		if got := s.KubeconfigMode(); got != want {
			t.Errorf("KubeconfigMode(%q) = %o, want %o", in, got, want)
		}
	}
}

func TestValidateTokenFileReadsFirstLine(t *testing.T) {
	for _, tc := range []struct {
		name, content, want string
	}{
		{"lf", "s3cret-s3cret-s3cret\nsecond line\n", "s3cret-s3cret-s3cret"},
		{"crlf", "s3cret-s3cret-s3cret\r\nsecond\r\n", "s3cret-s3cret-s3cret"},
		{"no newline", "s3cret-s3cret-s3cret", "s3cret-s3cret-s3cret"},
		{"full token", "K10abc::server:xyz-xyz-xyz-xyz-xyz\n", "K10abc::server:xyz-xyz-xyz-xyz-xyz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := validServer(t)
			s.TokenFile = filepath.Join(t.TempDir(), "token")
			if err := os.WriteFile(s.TokenFile, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := prepare(s); err != nil {
				t.Fatalf("Validate() = %v", err)
			}
			if s.Token != tc.want {
				t.Errorf("Token = %q, want %q", s.Token, tc.want)
			}
		})
	}
}

func TestValidateEmptyTokenFile(t *testing.T) {
	for _, content := range []string{"", "\n", "\nsecret\n"} {
		s := validServer(t)
		s.TokenFile = filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(s.TokenFile, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		err := prepare(s)
		if err == nil || !strings.Contains(err.Error(), "is empty") {
			t.Errorf("token file %q: Validate() = %v, want an 'is empty' error", content, err)
		}
	}
}

func TestValidateMakesDataDirAbsoluteWithoutCreatingIt(t *testing.T) {
	base := t.TempDir()
	t.Chdir(base)
	s := validServer(t)
	s.DataDir = filepath.Join("rel", "..", "state", "k1s")
	if err := prepare(s); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	want := filepath.Join(base, "state", "k1s")
	if s.DataDir != want {
		t.Errorf("DataDir = %q, want %q", s.DataDir, want)
	}
	if !filepath.IsAbs(s.DataDir) {
		t.Errorf("DataDir %q is not absolute", s.DataDir)
	}
	if _, err := os.Stat(filepath.Join(base, "state")); !os.IsNotExist(err) {
		t.Errorf("Validate created something under the data dir's parent (stat err %v); it must write nothing", err)
	}
	if got, want := s.TLSDir(), filepath.Join(want, "server", "tls"); got != want {
		t.Errorf("TLSDir() = %q, want %q", got, want)
	}
}

func TestValidateDerivesAdvertiseAddressFromBindAddress(t *testing.T) {
	s := validServer(t)
	s.AdvertiseAddress = ""
	s.BindAddress = "192.0.2.55"
	if err := prepare(s); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	if s.AdvertiseAddress != "192.0.2.55" {
		t.Errorf("AdvertiseAddress = %q, want the specific bind address 192.0.2.55", s.AdvertiseAddress)
	}
}

func TestFirstServiceIP(t *testing.T) {
	for cidr, want := range map[string]string{
		"10.43.0.0/16":  "10.43.0.1",
		"10.96.0.0/12":  "10.96.0.1",
		"172.16.8.0/24": "172.16.8.1",
		"fd00:43::/112": "fd00:43::1",
	} {
		s := &Server{Cluster: Cluster{ServiceCIDR: cidr}}
		got := s.FirstServiceIP()
		if !got.Equal(net.ParseIP(want)) {
			t.Errorf("FirstServiceIP(%s) = %v, want %s", cidr, got, want)
		}
		// The result must be a copy: ServiceNet must still be the network.
		if n := s.ServiceNet(); n.String() != cidr {
			t.Errorf("ServiceNet() = %v after FirstServiceIP, want %s", n, cidr)
		}
	}
}

func TestAPIServerURL(t *testing.T) {
	for bind, want := range map[string]string{
		"":           "https://127.0.0.1:6443",
		"0.0.0.0":    "https://127.0.0.1:6443",
		"::":         "https://127.0.0.1:6443",
		"192.0.2.5":  "https://192.0.2.5:6443",
		"2001:db8::": "https://[2001:db8::]:6443",
	} {
		s := &Server{BindAddress: bind, HTTPSPort: 6443}
		if got := s.APIServerURL(); got != want {
			t.Errorf("APIServerURL() with bind %q = %q, want %q", bind, got, want)
		}
	}
}

func TestDatastoreDefaultsAreValid(t *testing.T) {
	d := Datastore{ConnectTimeout: time.Second, CompactMinRetain: 0, CompactBatchSize: MinCompactBatch}
	if err := d.validate(); err != nil {
		t.Errorf("validate() = %v, want nil for the smallest compaction values", err)
	}
}

func TestDisableListsAndAliases(t *testing.T) {
	s := validServer(t)
	s.Disable = []string{"coredns, servicelb", "traefik"}
	if err := prepare(s); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"coredns", "servicelb", "ingress"} {
		if !s.Disabled(a) {
			t.Errorf("Disabled(%q) = false after --disable %v", a, s.Disable)
		}
	}
	s = validServer(t)
	s.Disable = []string{"servicelb"}
	if err := prepare(s); err != nil {
		t.Fatal(err)
	}
	if s.Disabled("coredns") || s.Disabled("ingress") || !s.Disabled("servicelb") {
		t.Errorf("--disable servicelb: coredns %v ingress %v servicelb %v", s.Disabled("coredns"), s.Disabled("ingress"), s.Disabled("servicelb"))
	}
	if s.FlannelBackend != "vxlan" {
		t.Errorf("default flannel backend %q, want vxlan", s.FlannelBackend)
	}
}

func TestNFTablesProxy(t *testing.T) {
	for args, want := range map[string]bool{"proxy-mode=nftables": true, "--proxy-mode=nftables": true, "proxy-mode=iptables": false, "": false} {
		n := Node{NodeOptions: NodeOptions{KubeProxyArgs: []string{args}}}
		if got := n.NFTablesProxy(); got != want {
			t.Errorf("NFTablesProxy(%q) = %v, want %v", args, got, want)
		}
	}
}
