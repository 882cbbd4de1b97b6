package config

import (
	"fmt"
	"net"
	"net/url"

	utilnet "k8s.io/apimachinery/pkg/util/net"
)

// Agent is the configuration of `k1s agent`, a worker node that joins a server.
type Agent struct {
	ConfigFile string

	DataDir string
	RunDir  string

	ServerURL string
	Token     string
	TokenFile string

	NodeName           string
	NodeIP             string
	NodeLabels         []string
	NodeTaints         []string
	PrivateRegistry    string
	ExtraKubeletArgs   []string
	ExtraKubeProxyArgs []string
	FlannelIface       string

	Debug bool
}

// Node is the agent's node; the cluster settings come from the server at join.
func (a *Agent) Node() Node {
	return Node{
		DataDir: a.DataDir, RunDir: a.RunDir,
		Name: a.NodeName, IP: a.NodeIP,
		Labels: a.NodeLabels, Taints: a.NodeTaints, PrivateRegistry: a.PrivateRegistry,
		KubeletArgs: a.ExtraKubeletArgs, ProxyArgs: a.ExtraKubeProxyArgs,
		APIServerURL: a.ServerURL, FlannelIface: a.FlannelIface,
	}
}

// Validate checks the flags and fills in what is derived from the host. It
// writes nothing.
func (a *Agent) Validate() error {
	if a.ServerURL == "" {
		return fmt.Errorf("--server is required: the URL of a k1s server, e.g. --server https://10.0.0.1:6443 (or K1S_URL)")
	}
	u, err := url.Parse(a.ServerURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return fmt.Errorf("invalid --server %q: want https://HOST:PORT, e.g. https://10.0.0.1:6443", a.ServerURL)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), fmt.Sprint(DefaultHTTPSPort))
	}
	a.ServerURL = "https://" + u.Host
	if err := resolveToken(&a.Token, a.TokenFile); err != nil {
		return err
	}
	if a.Token == "" {
		return fmt.Errorf("--token is required: the join token from the server's <data-dir>/server/token (or K1S_TOKEN)")
	}
	if err := resolveDirs(&a.DataDir, &a.RunDir); err != nil {
		return err
	}
	if err := validateNode(a.NodeName, a.NodeIP, a.NodeLabels, a.NodeTaints, a.ExtraKubeletArgs, a.ExtraKubeProxyArgs); err != nil {
		return err
	}
	if a.NodeIP == "" {
		ip, err := utilnet.ResolveBindAddress(net.ParseIP("0.0.0.0"))
		if err != nil || ip.IsLoopback() {
			return fmt.Errorf("could not find a non-loopback address of this host: set --node-ip")
		}
		a.NodeIP = ip.String()
	}
	return nil
}
