package pki

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// NodeFiles are a node's credentials: the cluster CAs, the kubelet's client
// and serving certificates, kube-proxy's client certificate, and the
// kubeconfigs using them. A server's own node and a joined agent have the
// same files.
type NodeFiles struct {
	Dir string
}

func (n NodeFiles) path(name string) string { return filepath.Join(n.Dir, name) }
func (n NodeFiles) ServerCA() string        { return n.path("server-ca.crt") }
func (n NodeFiles) ClientCA() string        { return n.path("client-ca.crt") }
func (n NodeFiles) ClientCert() string      { return n.path("client-kubelet.crt") }
func (n NodeFiles) ClientKey() string       { return n.path("client-kubelet.key") }
func (n NodeFiles) ServingCert() string     { return n.path("serving-kubelet.crt") }
func (n NodeFiles) ServingKey() string      { return n.path("serving-kubelet.key") }
func (n NodeFiles) ProxyCert() string       { return n.path("client-kube-proxy.crt") }
func (n NodeFiles) ProxyKey() string        { return n.path("client-kube-proxy.key") }
func (n NodeFiles) Kubeconfig() string      { return n.path("kubelet.kubeconfig") }
func (n NodeFiles) ProxyKubeconfig() string { return n.path("kube-proxy.kubeconfig") }
func (n NodeFiles) FlannelCert() string     { return n.path("client-flannel.crt") }
func (n NodeFiles) FlannelKey() string      { return n.path("client-flannel.key") }
func (n NodeFiles) FlannelKubeconfig() string {
	return n.path("flannel.kubeconfig")
}
func (n NodeFiles) NetworkPolicyCert() string { return n.path("client-network-policy.crt") }
func (n NodeFiles) NetworkPolicyKey() string  { return n.path("client-network-policy.key") }
func (n NodeFiles) NetworkPolicyKubeconfig() string {
	return n.path("network-policy.kubeconfig")
}

// NetworkPolicyGroup holds every node's NetworkPolicy enforcer: it must
// watch every Pod, Namespace and NetworkPolicy, which the Node authorizer
// does not let a kubelet do.
const NetworkPolicyGroup = "system:k1s-network-policy"

// NetworkPolicyUser is one node's NetworkPolicy enforcer identity.
func NetworkPolicyUser(node string) string { return NetworkPolicyGroup + ":" + node }

// FlannelGroup holds every node's flannel identity: flannel must list
// every Node, which the Node authorizer does not let a kubelet do.
const FlannelGroup = "system:k1s-flannel"

// FlannelUser is one node's flannel identity, allowed to change only that
// node's status (its flannel annotations), so a compromised host cannot
// touch other Nodes.
func FlannelUser(node string) string { return FlannelGroup + ":" + node }

// nodeLeaves: the kubelet's client certificate is system:node:<name> in
// system:nodes, as the Node authorizer expects; its serving certificate
// comes from the kubelet-serving CA, which only the apiserver trusts (a
// node must not be able to pose as the apiserver); kube-proxy is
// system:kube-proxy, bound to system:node-proxier by the default policy;
// flannel and the NetworkPolicy enforcer have per-node users in groups
// of their own.
func nodeLeaves(res *Result, name, ip string) []*leaf {
	ips := []net.IP{net.ParseIP("127.0.0.1")}
	if p := net.ParseIP(ip); p != nil {
		ips = append(ips, p)
	}
	return []*leaf{
		{name: "client-kubelet", ca: res.ClientCA, cn: "system:node:" + name, orgs: []string{"system:nodes"}, client: true},
		{name: "serving-kubelet", ca: res.KubeletServingCA, cn: name, server: true, dnsNames: []string{name, "localhost"}, ips: dedupeIPs(ips)},
		{name: "client-kube-proxy", ca: res.ClientCA, cn: "system:kube-proxy", client: true},
		{name: "client-flannel", ca: res.ClientCA, cn: FlannelUser(name), orgs: []string{FlannelGroup}, client: true},
		{name: "client-network-policy", ca: res.ClientCA, cn: NetworkPolicyUser(name), orgs: []string{NetworkPolicyGroup}, client: true},
	}
}

// EnsureNode writes the server's own node credentials into dir, keeping
// certificates that are still good so restarts change nothing.
func EnsureNode(res *Result, dir, nodeName, nodeIP, apiURL string, now time.Time) ([]Event, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	var events []Event
	for _, l := range nodeLeaves(res, nodeName, nodeIP) {
		ev, err := ensureLeaf(dir, l, false, now)
		if err != nil {
			return nil, fmt.Errorf("certificate %s: %w", l.name, err)
		}
		if ev != nil {
			events = append(events, *ev)
		}
	}
	return events, writeNodeCommon(NodeFiles{Dir: dir}, res.ServerCA.CertPEM, res.ClientCA.CertPEM, apiURL)
}

// NodeBundle is a node's credentials as the server hands them to an agent.
type NodeBundle struct {
	ServerCA    []byte `json:"serverCA"`
	ClientCA    []byte `json:"clientCA"`
	KubeletCert []byte `json:"kubeletCert"`
	KubeletKey  []byte `json:"kubeletKey"`
	ServingCert []byte `json:"servingCert"`
	ServingKey  []byte `json:"servingKey"`
	ProxyCert   []byte `json:"proxyCert"`
	ProxyKey    []byte `json:"proxyKey"`
	FlannelCert []byte `json:"flannelCert"`
	FlannelKey  []byte `json:"flannelKey"`
	NetpolCert  []byte `json:"networkPolicyCert"`
	NetpolKey   []byte `json:"networkPolicyKey"`
}

// IssueNode issues fresh credentials for a joining node.
func IssueNode(res *Result, nodeName, nodeIP string, now time.Time) (*NodeBundle, error) {
	b := &NodeBundle{ServerCA: res.ServerCA.CertPEM, ClientCA: res.ClientCA.CertPEM}
	out := [][2]*[]byte{{&b.KubeletCert, &b.KubeletKey}, {&b.ServingCert, &b.ServingKey}, {&b.ProxyCert, &b.ProxyKey}, {&b.FlannelCert, &b.FlannelKey}, {&b.NetpolCert, &b.NetpolKey}}
	for i, l := range nodeLeaves(res, nodeName, nodeIP) {
		key, err := newKey()
		if err != nil {
			return nil, err
		}
		cert, err := l.sign(key, now)
		if err != nil {
			return nil, err
		}
		keyPEM, err := encodeKey(key)
		if err != nil {
			return nil, err
		}
		*out[i][0], *out[i][1] = cert, keyPEM
	}
	return b, nil
}

// WriteNode writes credentials received from the server into dir.
func WriteNode(dir string, b *NodeBundle, apiURL string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	n := NodeFiles{Dir: dir}
	if err := writeNodePairs(n, b, nil); err != nil {
		return err
	}
	return writeNodeCommon(n, b.ServerCA, b.ClientCA, apiURL)
}

// WriteNodeSome writes only the named certificates (NodeLeafNames) of b,
// each with its key, into a node's existing credentials dir.
func WriteNodeSome(dir string, b *NodeBundle, names map[string]bool) error {
	return writeNodePairs(NodeFiles{Dir: dir}, b, names)
}

// writeNodePairs writes b's key and certificate pairs, all of them or
// those named in only; a key goes before its certificate.
func writeNodePairs(n NodeFiles, b *NodeBundle, only map[string]bool) error {
	for _, p := range []struct {
		name      string
		key, cert []byte
	}{
		{"client-kubelet", b.KubeletKey, b.KubeletCert},
		{"serving-kubelet", b.ServingKey, b.ServingCert},
		{"client-kube-proxy", b.ProxyKey, b.ProxyCert},
		{"client-flannel", b.FlannelKey, b.FlannelCert},
		{"client-network-policy", b.NetpolKey, b.NetpolCert},
	} {
		if only != nil && !only[p.name] {
			continue
		}
		if len(p.key) == 0 || len(p.cert) == 0 {
			return fmt.Errorf("the server sent no %s certificate and key", p.name)
		}
		if err := writeFileAtomic(n.path(p.name+".key"), p.key, 0o600); err != nil {
			return err
		}
		if err := writeFileAtomic(n.path(p.name+".crt"), p.cert, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeNodeCommon writes the CA copies and the kubeconfigs.
func writeNodeCommon(n NodeFiles, serverCA, clientCA []byte, apiURL string) error {
	if err := writeFileAtomic(n.ServerCA(), serverCA, 0o644); err != nil {
		return err
	}
	if err := writeFileAtomic(n.ClientCA(), clientCA, 0o644); err != nil {
		return err
	}
	for _, k := range []struct{ path, user, cert, key string }{
		{n.Kubeconfig(), "kubelet", n.ClientCert(), n.ClientKey()},
		{n.ProxyKubeconfig(), "kube-proxy", n.ProxyCert(), n.ProxyKey()},
		{n.FlannelKubeconfig(), "flannel", n.FlannelCert(), n.FlannelKey()},
		{n.NetworkPolicyKubeconfig(), "network-policy", n.NetworkPolicyCert(), n.NetworkPolicyKey()},
	} {
		data, err := kubeconfig(apiURL, k.user, nil, n.ServerCA(), k.cert, k.key, false)
		if err != nil {
			return err
		}
		if err := writeFileAtomic(k.path, data, 0o600); err != nil {
			return err
		}
	}
	return nil
}
