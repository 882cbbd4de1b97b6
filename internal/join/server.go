package join

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"github.com/k1s-io/k1s/internal/config"
	"github.com/k1s-io/k1s/internal/control"
	"github.com/k1s-io/k1s/internal/pki"
)

// Server is the server side of joining.
type Server struct {
	PKI    *pki.Result
	Secret string // the server token's secret, unless TokenPath is set
	// TokenPath, when set, is the server token file, read at every join so
	// that `k1s token rotate` takes effect without a restart.
	TokenPath string
	// Cluster holds the settings handed to nodes.
	Cluster config.Cluster
	// Kube returns a client with the rights to manage node-password Secrets.
	Kube func() (kubernetes.Interface, error)
	Log  logrus.FieldLogger
	// Etcd adds joining servers to the embedded etcd (nil: no embedded
	// etcd here, server joins are refused).
	Etcd EtcdMembers

	serverJoinMu sync.Mutex // one server joins at a time
	open         atomic.Bool
	limOnce      sync.Once
	lim          *limiter
}

// Open lets joins in. Until then the join endpoint answers 503: the server
// claims its own node name first, so that no agent can take it.
func (s *Server) Open() { s.open.Store(true) }

func (s *Server) limiter() *limiter {
	s.limOnce.Do(func() { s.lim = newLimiter() })
	return s.lim
}

// Front wraps the apiserver's handler with the join endpoints.
func (s *Server) Front(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case CACertsPath:
			s.serveCA(w, r)
		case JoinPath:
			s.serveJoin(w, r)
		case ServerJoinPath:
			s.serveServerJoin(w, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func (s *Server) serveCA(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		fail(w, http.StatusMethodNotAllowed, "use GET")
		return
	}
	// The token hashes the CA file's exact bytes.
	data, err := os.ReadFile(s.PKI.Files.ServerCA())
	if err != nil {
		fail(w, http.StatusInternalServerError, "server CA unreadable")
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = w.Write(data)
}

// admit answers what the join endpoints refuse before reading a token:
// another method than POST, a server still starting, a source throttled
// for wrong tokens. ready (nil for none) may refuse first with its own
// answer. ok is false when w has been answered.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, ready func() bool) (lim *limiter, addr string, ok bool) {
	if r.Method != http.MethodPost {
		fail(w, http.StatusMethodNotAllowed, "use POST")
		return nil, "", false
	}
	if ready != nil && !ready() {
		return nil, "", false
	}
	if !s.open.Load() {
		w.Header().Set("Retry-After", "2")
		fail(w, http.StatusServiceUnavailable, "server is starting: try again shortly")
		return nil, "", false
	}
	lim, addr = s.limiter(), sourceOf(r.RemoteAddr)
	if wait, blocked := lim.blocked(addr); blocked {
		secs := int(wait.Seconds()) + 1
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		fail(w, http.StatusTooManyRequests, fmt.Sprintf("too many failed joins from %s: try again in %d s", addr, secs))
		return nil, "", false
	}
	return lim, addr, true
}

func (s *Server) serveJoin(w http.ResponseWriter, r *http.Request) {
	lim, addr, ok := s.admit(w, r, nil)
	if !ok {
		return
	}
	refuse := func(code int, msg string) {
		lim.refuse(s.Log, addr, code == http.StatusUnauthorized, msg)
		fail(w, code, msg)
	}
	refuseWith := func(rf *refusal) {
		lim.refuse(s.Log, addr, rf.counts, rf.msg)
		fail(w, rf.code, rf.msg)
	}
	// No Authorization but a client certificate: a joined node
	// re-authenticates (reauth.go). Anything else needs a token.
	certNode := ""
	if r.Header.Get("Authorization") == "" && r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		name, bad := s.certNode(r.TLS.PeerCertificates, time.Now())
		if bad != nil {
			refuseWith(bad)
			return
		}
		certNode = name
	} else if err := s.authenticate(r, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")); err != nil {
		var bad *errBadBootstrap
		if errors.As(err, &bad) {
			refuse(http.StatusUnauthorized, bad.msg)
			return
		}
		// The details (paths, apiserver errors) are for the server's log only.
		s.Log.Warnf("join from %s: cannot check its token: %v", addr, err)
		fail(w, http.StatusServiceUnavailable, "the server cannot check tokens now: try again later (the server's log says why)")
		return
	}
	var req Request
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		refuse(http.StatusBadRequest, "malformed join request: "+err.Error())
		return
	}
	if msg := s.checkRequest(&req); msg != "" {
		refuse(http.StatusBadRequest, msg)
		return
	}
	kube, err := s.Kube()
	if err != nil {
		fail(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if certNode != "" {
		bad, err := admitNode(r.Context(), kube, certNode, &req)
		if err != nil {
			s.Log.Warnf("join from %s: cannot check node %s's password: %v", addr, certNode, err)
			fail(w, http.StatusServiceUnavailable, "checking the node password: "+err.Error())
			return
		}
		if bad != nil {
			refuseWith(bad)
			return
		}
	} else if err := ClaimNodeName(r.Context(), kube, req.NodeName, req.Password); err != nil {
		if errors.Is(err, ErrNameTaken) {
			refuse(http.StatusConflict, err.Error())
			return
		}
		fail(w, http.StatusServiceUnavailable, "checking the node password: "+err.Error())
		return
	}
	if err := control.EnsureFlannelNodeRBAC(r.Context(), kube, req.NodeName); err != nil {
		fail(w, http.StatusServiceUnavailable, "granting flannel its node's rights: "+err.Error())
		return
	}
	certs, err := pki.IssueNode(s.PKI, req.NodeName, req.NodeIP, time.Now())
	if err != nil {
		fail(w, http.StatusInternalServerError, "issuing certificates: "+err.Error())
		return
	}
	resp := Response{Certs: *certs, Cluster: s.Cluster}
	how := "a token"
	if certNode != "" {
		how = "its node certificate"
	}
	s.Log.Infof("node %s (%s) joined from %s with %s", req.NodeName, req.NodeIP, r.RemoteAddr, how)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// authenticate accepts the server token or a bootstrap token; a refusal
// is an *errBadBootstrap, any other error a fault of the server.
func (s *Server) authenticate(r *http.Request, secret string) error {
	want := s.Secret
	if s.TokenPath != "" {
		data, err := os.ReadFile(s.TokenPath)
		if err != nil {
			return fmt.Errorf("reading the server token: %w", err)
		}
		tok, err := pki.ParseToken(string(data))
		if err != nil {
			return fmt.Errorf("the server token in %s: %w", s.TokenPath, err)
		}
		want = tok.Secret
	}
	if secret != "" && subtle.ConstantTimeCompare([]byte(secret), []byte(want)) == 1 {
		return nil
	}
	if !IsBootstrapToken(secret) {
		return errUnknownToken
	}
	kube, err := s.Kube()
	if err != nil {
		return err
	}
	return checkBootstrapToken(r.Context(), kube, secret, time.Now())
}

// checkRequest returns why req cannot join, or "". A node's serving
// certificate must not name anything the apiserver answers to, or a
// token holder could pose as the apiserver to whoever trusts its name.
func (s *Server) checkRequest(req *Request) string {
	if errs := validation.IsDNS1123Subdomain(req.NodeName); len(errs) > 0 {
		return fmt.Sprintf("invalid nodeName %.64q: %s", req.NodeName, strings.Join(errs, "; "))
	}
	for _, d := range s.PKI.ServingDNSNames {
		if strings.EqualFold(d, req.NodeName) {
			return fmt.Sprintf("nodeName %q is a name of the apiserver (on its serving certificate): choose another --node-name", req.NodeName)
		}
	}
	ip := net.ParseIP(req.NodeIP)
	if ip == nil {
		return fmt.Sprintf("invalid nodeIP %.64q: want an IP address", req.NodeIP)
	}
	if ip.IsUnspecified() || ip.IsMulticast() {
		return fmt.Sprintf("nodeIP %s is not a host address: set --node-ip", ip)
	}
	for _, a := range s.PKI.ServingIPs {
		if a.Equal(ip) {
			return fmt.Sprintf("nodeIP %s is an address of the apiserver (on its serving certificate): set --node-ip to this node's own address", ip)
		}
	}
	if n := s.Cluster.ServiceNet(); n != nil && n.Contains(ip) {
		return fmt.Sprintf("nodeIP %s is inside the service CIDR %s: set --node-ip to this node's own address", ip, n)
	}
	if len(req.Password) < 16 {
		return "node password too short"
	}
	return ""
}

func fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(Error{Message: msg})
}
