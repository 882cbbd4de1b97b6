package join

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
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
	Secret string // the token's secret
	// Cluster holds the settings handed to nodes.
	Cluster config.Cluster
	// Kube returns a client with the rights to manage node-password Secrets.
	Kube func() (kubernetes.Interface, error)
	Log  logrus.FieldLogger
}

// Front wraps the apiserver's handler with the join endpoints.
func (s *Server) Front(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case CACertsPath:
			s.serveCA(w, r)
		case JoinPath:
			s.serveJoin(w, r)
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

func (s *Server) serveJoin(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		fail(w, http.StatusMethodNotAllowed, "use POST")
		return
	}
	secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(secret), []byte(s.Secret)) != 1 {
		s.Log.Warnf("refused a join from %s: wrong token", r.RemoteAddr)
		fail(w, http.StatusUnauthorized, "wrong token")
		return
	}
	var req Request
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, "malformed join request: "+err.Error())
		return
	}
	if errs := validation.IsDNS1123Subdomain(req.NodeName); len(errs) > 0 {
		fail(w, http.StatusBadRequest, "invalid node name "+req.NodeName+": "+strings.Join(errs, "; "))
		return
	}
	if net.ParseIP(req.NodeIP) == nil {
		fail(w, http.StatusBadRequest, "invalid node IP "+req.NodeIP)
		return
	}
	if len(req.Password) < 16 {
		fail(w, http.StatusBadRequest, "node password too short")
		return
	}
	kube, err := s.Kube()
	if err != nil {
		fail(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if err := ClaimNodeName(r.Context(), kube, req.NodeName, req.Password); err != nil {
		if errors.Is(err, ErrNameTaken) {
			s.Log.Warnf("refused a join from %s: %v", r.RemoteAddr, err)
			fail(w, http.StatusConflict, err.Error())
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
	s.Log.Infof("node %s (%s) joined from %s", req.NodeName, req.NodeIP, r.RemoteAddr)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

func fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(Error{Message: msg})
}
