package join

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/k1s-io/k1s/internal/pki"
)

// ServerJoinPath is where another server asks to join the embedded etcd.
const ServerJoinPath = "/v1-k1s/server-join"

// ServerJoinRequest is what a joining server sends: its etcd member's
// name and peer URL.
type ServerJoinRequest struct {
	Name    string `json:"name"`
	PeerURL string `json:"peerURL"`
}

// ServerJoinResponse carries the cluster's bootstrap bundle (sealed with
// the server token, package bootstrap) and etcd's initial-cluster string
// with the joiner's member in it.
type ServerJoinResponse struct {
	Bundle         []byte `json:"bundle"`
	InitialCluster string `json:"initialCluster"`
}

// EtcdMembers adds joining servers to the embedded etcd (package server
// implements it; nil on a server without embedded etcd).
type EtcdMembers interface {
	// AddLearner adds a learner member with peerURL, or finds the one a
	// previous attempt of the same server added, and returns etcd's
	// initial-cluster string for it. ErrTryLater: another server is
	// joining now.
	AddLearner(ctx context.Context, name, peerURL string) (string, error)
	// Bundle is the cluster's sealed bootstrap bundle.
	Bundle(ctx context.Context) ([]byte, error)
}

// ErrTryLater: the cluster cannot take another member right now (another
// learner is still catching up).
var ErrTryLater = errors.New("another server is joining: try again shortly")

// serveServerJoin admits another server: the server token only (never a
// bootstrap token: a server holds every key of the cluster), one at a time.
func (s *Server) serveServerJoin(w http.ResponseWriter, r *http.Request) {
	lim, addr, ok := s.admit(w, r, func() bool {
		if s.Etcd == nil {
			fail(w, http.StatusNotFound, "this server does not run embedded etcd (start the first server with --cluster-init)")
			return false
		}
		return true
	})
	if !ok {
		return
	}
	want, err := s.serverSecret()
	if err != nil {
		s.Log.Warnf("server join from %s: %v", addr, err)
		fail(w, http.StatusServiceUnavailable, "the server cannot check tokens now: try again later (the server's log says why)")
		return
	}
	got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		msg := "a server joins with the server token (the first server's <data-dir>/server/token), not a bootstrap or agent token"
		lim.refuse(s.Log, addr, true, msg)
		fail(w, http.StatusUnauthorized, msg)
		return
	}
	var req ServerJoinRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		lim.refuse(s.Log, addr, false, "malformed server join request")
		fail(w, http.StatusBadRequest, "malformed server join request: "+err.Error())
		return
	}
	if msg := checkPeer(req); msg != "" {
		lim.refuse(s.Log, addr, false, msg)
		fail(w, http.StatusBadRequest, msg)
		return
	}
	s.serverJoinMu.Lock()
	defer s.serverJoinMu.Unlock()
	ic, err := s.Etcd.AddLearner(r.Context(), req.Name, req.PeerURL)
	if errors.Is(err, ErrTryLater) {
		w.Header().Set("Retry-After", "5")
		fail(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if err != nil {
		s.Log.Warnf("server join from %s: adding etcd member %s: %v", addr, req.PeerURL, err)
		fail(w, http.StatusServiceUnavailable, "adding the etcd member: "+err.Error())
		return
	}
	bundle, err := s.Etcd.Bundle(r.Context())
	if err != nil {
		fail(w, http.StatusServiceUnavailable, "reading the cluster's bootstrap bundle: "+err.Error())
		return
	}
	s.Log.Infof("server %s (etcd peer %s) joins from %s: added as an etcd learner; it is promoted to a voting member once it has caught up", req.Name, req.PeerURL, r.RemoteAddr)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(ServerJoinResponse{Bundle: bundle, InitialCluster: ic})
}

// serverSecret is the server token's secret (re-read from its file).
func (s *Server) serverSecret() (string, error) {
	if s.TokenPath == "" {
		return s.Secret, nil
	}
	data, err := os.ReadFile(s.TokenPath)
	if err != nil {
		return "", fmt.Errorf("reading the server token: %w", err)
	}
	tok, err := pki.ParseToken(string(data))
	if err != nil {
		return "", fmt.Errorf("the server token in %s: %w", s.TokenPath, err)
	}
	return tok.Secret, nil
}

// checkPeer returns why req cannot become a member, or "".
func checkPeer(req ServerJoinRequest) string {
	if req.Name == "" || len(req.Name) > 253 || strings.ContainsAny(req.Name, "=, \t\n") {
		return fmt.Sprintf("invalid member name %.64q", req.Name)
	}
	u, err := url.Parse(req.PeerURL)
	if err != nil || u.Scheme != "https" || u.Path != "" || u.Port() == "" {
		return fmt.Sprintf("invalid peer URL %.64q: want https://IP:port", req.PeerURL)
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || ip.IsLoopback() || ip.IsUnspecified() {
		return fmt.Sprintf("peer URL %s: want an address other servers reach (--advertise-address)", req.PeerURL)
	}
	return ""
}

// ServerJoin is the joining server's side: fetch the CA and check it
// against the token's hash, then ask to join the embedded etcd.
func (c *Client) ServerJoin(ctx context.Context, req ServerJoinRequest) (*ServerJoinResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	pool, err := c.serverCA(ctx)
	if err != nil {
		return nil, err
	}
	code, _, data, err := c.send(ctx, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, "Bearer "+c.Token.Secret, ServerJoinPath, req, 4<<20)
	if err != nil {
		return nil, err
	}
	switch code {
	case http.StatusOK:
	case http.StatusUnauthorized:
		return nil, &Permanent{fmt.Errorf("the server at %s refused the token (%s): use the first server's <data-dir>/server/token", c.URL, message(data))}
	case http.StatusNotFound, http.StatusBadRequest:
		return nil, &Permanent{fmt.Errorf("the server at %s refused to add this server: %s", c.URL, message(data))}
	default:
		return nil, &RetryAfter{After: 5 * time.Second, Err: fmt.Errorf("joining %s: %d %s: %s", c.URL, code, http.StatusText(code), message(data))}
	}
	var out ServerJoinResponse
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("joining %s: malformed answer: %w", c.URL, err)
	}
	return &out, nil
}
