// Package join is how an agent becomes a node of a k1s cluster. The server
// side serves two endpoints on the apiserver's port, ahead of the
// apiserver's own authentication: GET /cacerts (the server CA, which the
// agent checks against the hash in its K10 token before it trusts anything)
// and POST /v1-k1s/join (authenticated by the server token's secret, re-read
// from its file at every join, or by a Kubernetes bootstrap token looked up
// through the apiserver, or for a node that joined before by its own
// kubelet client certificate and node password, for that node only;
// throttled per source address after wrong credentials, closed until the
// server has claimed its own node name), which refuses
// names and addresses of the apiserver, reserves the node name for the
// host's node password and issues the node's certificates. The client side
// is the agent's half, which tries the node's own certificate before the
// token. POST /v1-k1s/server-join (the server token only) adds another
// server's member to the embedded etcd and hands it the sealed bootstrap
// bundle; ServerJoin is that server's side. RotateNode uses the agent's
// client to renew a joined agent's certificates for `k1s certificate rotate`. The package also creates, lists and deletes
// bootstrap tokens and rotates the server token, for `k1s token`.
package join

import (
	"time"

	"github.com/k1s-io/k1s/internal/config"
	"github.com/k1s-io/k1s/internal/pki"
)

// Endpoint paths on the apiserver's port.
const (
	CACertsPath = "/cacerts"
	JoinPath    = "/v1-k1s/join"
)

// Request is what an agent sends to join.
type Request struct {
	NodeName string `json:"nodeName"`
	NodeIP   string `json:"nodeIP"`
	// Password identifies the host: the first host to join with a node name
	// owns it; another host asking for the same name is refused.
	Password string `json:"password"`
}

// Response carries the node's credentials and the cluster's settings
// (flattened into the same JSON object).
type Response struct {
	Certs pki.NodeBundle `json:"certs"`
	config.Cluster
}

// Error is the JSON body of a refused request.
type Error struct {
	Message string `json:"message"`
}

const requestTimeout = 30 * time.Second
