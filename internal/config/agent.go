package config

import (
	"fmt"
	"net"
	"net/url"

	utilnet "k8s.io/apimachinery/pkg/util/net"
)

// Agent is the configuration of `k1s agent`, a worker node that joins a
// server. The cluster settings are not here: the agent receives them when
// it joins, and builds its Node with them (Agent.Node).
type Agent struct {
	ConfigFile string

	DataDir string
	RunDir  string

	ServerURL string
	Token     string
	TokenFile string
	// InsecureSkipCACheck allows a bare token secret, which pins no CA: the
	// agent then trusts whichever server answers first.
	InsecureSkipCACheck bool
	// APIServerLBPort is the loopback port of the agent's apiserver load
	// balancer (package apilb); 0 turns it off (clients use ServerURL).
	APIServerLBPort int

	Debug bool

	NodeOptions
}

// Node is the agent's node, with the cluster settings from the server.
func (a *Agent) Node(c Cluster) Node {
	return Node{DataDir: a.DataDir, RunDir: a.RunDir, NodeOptions: a.NodeOptions, Cluster: c, APIServerURL: a.ServerURL}
}

// Complete fills in defaults and what comes from the host (see
// Server.Complete). It writes nothing.
func (a *Agent) Complete() error {
	// https://HOST[/] becomes https://HOST:6443; anything else is left for Validate.
	if u, err := url.Parse(a.ServerURL); err == nil && u.Scheme == "https" && u.Host != "" && (u.Path == "" || u.Path == "/") && u.RawQuery == "" && u.User == nil {
		if u.Port() == "" {
			u.Host = net.JoinHostPort(u.Hostname(), fmt.Sprint(DefaultHTTPSPort))
		}
		a.ServerURL = "https://" + u.Host
	}
	if err := readTokenFile(&a.Token, a.TokenFile); err != nil {
		return err
	}
	if err := completeDirs(&a.DataDir, &a.RunDir); err != nil {
		return err
	}
	return a.NodeOptions.complete(func() (string, error) {
		ip, err := utilnet.ResolveBindAddress(net.ParseIP("0.0.0.0"))
		if err != nil || ip.IsLoopback() {
			return "", fmt.Errorf("could not find a non-loopback address of this host: set --node-ip")
		}
		return ip.String(), nil
	})
}

// Validate checks the completed config; it changes nothing.
func (a *Agent) Validate() error {
	if a.ServerURL == "" {
		return fmt.Errorf("--server is required: the URL of a k1s server, e.g. --server https://10.0.0.1:6443 (or K1S_URL)")
	}
	u, err := url.Parse(a.ServerURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
		return fmt.Errorf("invalid --server %q: want https://HOST:PORT, e.g. https://10.0.0.1:6443", a.ServerURL)
	}
	if a.Token == "" {
		return fmt.Errorf("--token is required: the join token from the server's <data-dir>/server/token (or K1S_TOKEN, or --token-file)")
	}
	if a.APIServerLBPort < 0 || a.APIServerLBPort > 65535 {
		return fmt.Errorf("invalid --apiserver-lb-port %d: want a free TCP port 1-65535, or 0 to reach --server directly without the load balancer", a.APIServerLBPort)
	}
	if err := validateDirs(a.DataDir, a.RunDir); err != nil {
		return err
	}
	if err := a.NodeOptions.validate(true); err != nil {
		return err
	}
	if _, pinned := tokenSecret(a.Token); !pinned && !a.InsecureSkipCACheck {
		return fmt.Errorf("--token is a bare secret, which does not pin the server's CA (anyone answering at --server could pose as the server): use the full K10… token from the server's <data-dir>/server/token, or accept the risk with --insecure-skip-ca-check")
	}
	return nil
}
