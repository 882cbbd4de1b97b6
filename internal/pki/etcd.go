package pki

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// EtcdFiles are the embedded etcd member's TLS files, in Dir
// (<data-dir>/server/tls/etcd). Two CAs of its own: the server CA signs
// the member's client-serving certificate and the certificate its clients
// (the apiserver, k1s) present; the peer CA signs the certificate members
// present to each other in both directions.
type EtcdFiles struct{ Dir string }

func (f EtcdFiles) path(name string) string { return filepath.Join(f.Dir, name) }
func (f EtcdFiles) ServerCA() string        { return f.path("server-ca.crt") }
func (f EtcdFiles) PeerCA() string          { return f.path("peer-ca.crt") }
func (f EtcdFiles) ServingCert() string     { return f.path("serving.crt") }
func (f EtcdFiles) ServingKey() string      { return f.path("serving.key") }
func (f EtcdFiles) ClientCert() string      { return f.path("client.crt") }
func (f EtcdFiles) ClientKey() string       { return f.path("client.key") }
func (f EtcdFiles) PeerCert() string        { return f.path("peer.crt") }
func (f EtcdFiles) PeerKey() string         { return f.path("peer.key") }

// EtcdCAFiles are the etcd CAs' files, relative to the etcd TLS dir: what
// every member of one cluster must share.
var EtcdCAFiles = []string{"server-ca.crt", "server-ca.key", "peer-ca.crt", "peer-ca.key"}

// EnsureEtcd makes (or renews, like Ensure) the embedded etcd member's
// CAs and certificates in f.Dir: the serving certificate for the loopback
// client URL, one client certificate, and the peer certificate for peerIP.
// Every file there, certificates included, is mode 0600: nothing but k1s
// reads them.
func EnsureEtcd(f EtcdFiles, peerIP net.IP, now time.Time) ([]Event, error) {
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return nil, err
	}
	var events []Event
	cas := map[string]*CA{}
	for _, c := range []struct{ name, cn string }{{"server-ca", "k1s-etcd-server-ca"}, {"peer-ca", "k1s-etcd-peer-ca"}} {
		ca, ev, err := loadOrCreateCA(f.Dir, c.name, c.cn, now)
		if err != nil {
			return nil, fmt.Errorf("etcd %w", err)
		}
		if ev != nil {
			ev.Name = "etcd " + ev.Name
			events = append(events, *ev)
		}
		cas[c.name] = ca
	}
	loopback := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	leaves := []*leaf{
		// etcd's JSON gateway dials the member's gRPC port with the serving
		// certificate as its client certificate.
		{name: "serving", ca: cas["server-ca"], cn: "k1s-etcd", server: true, client: true, dnsNames: []string{"localhost"}, ips: loopback},
		{name: "client", ca: cas["server-ca"], cn: "k1s-etcd-client", client: true},
		// Peers dial each other with this certificate too, and etcd checks
		// a client certificate's addresses against where it comes from.
		{name: "peer", ca: cas["peer-ca"], cn: "k1s-etcd-peer", server: true, client: true, dnsNames: []string{"localhost"}, ips: append([]net.IP{peerIP}, loopback...)},
	}
	for _, l := range leaves {
		ev, err := ensureLeaf(f.Dir, l, false, now)
		if err != nil {
			return nil, fmt.Errorf("etcd certificate %s: %w", l.name, err)
		}
		if ev != nil {
			ev.Name = "etcd " + ev.Name
			events = append(events, *ev)
		}
	}
	entries, err := os.ReadDir(f.Dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			if err := os.Chmod(filepath.Join(f.Dir, e.Name()), 0o600); err != nil {
				return nil, err
			}
		}
	}
	return events, nil
}
