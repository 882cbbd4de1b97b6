package config

import (
	"fmt"
	"net"
	"strings"
)

// Cluster holds the settings every node of one cluster shares. The server
// takes them from its flags; an agent receives them when it joins.
type Cluster struct {
	ClusterCIDR   string `json:"clusterCIDR"`
	ServiceCIDR   string `json:"serviceCIDR"`
	ClusterDNS    string `json:"clusterDNS"`
	ClusterDomain string `json:"clusterDomain"`
	// FlannelBackend is the Pod network between nodes; every node uses the same.
	FlannelBackend string `json:"flannelBackend"`
}

// FlannelBackends are the values --flannel-backend takes; "none" leaves
// the Pod network to a CNI the user installs.
var FlannelBackends = []string{"vxlan", "host-gw", "none"}

// Validate checks the cluster settings; errors name the server flag that
// sets each one (an agent reports them as the server's settings).
func (c *Cluster) Validate() error {
	clusterNet, err := parseCIDR("--cluster-cidr", c.ClusterCIDR, DefaultClusterCIDR)
	if err != nil {
		return err
	}
	serviceNet, err := parseCIDR("--service-cidr", c.ServiceCIDR, DefaultServiceCIDR)
	if err != nil {
		return err
	}
	if clusterNet.Contains(serviceNet.IP) || serviceNet.Contains(clusterNet.IP) {
		return fmt.Errorf("--cluster-cidr %s and --service-cidr %s overlap: pick two separate ranges", c.ClusterCIDR, c.ServiceCIDR)
	}
	if ones, bits := serviceNet.Mask.Size(); bits-ones > 20 {
		return fmt.Errorf("--service-cidr %s is too large: the prefix must be at least /%d (at most 2^20 addresses)", c.ServiceCIDR, bits-20)
	}
	dns := net.ParseIP(c.ClusterDNS)
	if dns == nil {
		return fmt.Errorf("invalid --cluster-dns %q: want an IP address inside --service-cidr, e.g. %s", c.ClusterDNS, DefaultClusterDNS)
	}
	if !serviceNet.Contains(dns) {
		return fmt.Errorf("--cluster-dns %s is outside --service-cidr %s", c.ClusterDNS, c.ServiceCIDR)
	}
	if c.ClusterDomain == "" {
		return fmt.Errorf("--cluster-domain must not be empty")
	}
	for _, v := range FlannelBackends {
		if c.FlannelBackend == v {
			return nil
		}
	}
	return fmt.Errorf("invalid --flannel-backend %q: want one of %s", c.FlannelBackend, strings.Join(FlannelBackends, ", "))
}

// ServiceNet returns the parsed service CIDR (valid after Validate).
func (c *Cluster) ServiceNet() *net.IPNet {
	_, n, _ := net.ParseCIDR(c.ServiceCIDR)
	return n
}

// FirstServiceIP is the ClusterIP of the `kubernetes` Service.
func (c *Cluster) FirstServiceIP() net.IP {
	n := c.ServiceNet()
	ip := make(net.IP, len(n.IP))
	copy(ip, n.IP)
	ip[len(ip)-1]++
	return ip
}

func parseCIDR(flag, value, example string) (*net.IPNet, error) {
	ip, n, err := net.ParseCIDR(value)
	if err != nil {
		return nil, fmt.Errorf("invalid %s %q: want a network in CIDR notation, e.g. %s", flag, value, example)
	}
	if !ip.Equal(n.IP) {
		return nil, fmt.Errorf("invalid %s %q: host bits are set; did you mean %s?", flag, value, n.String())
	}
	return n, nil
}
