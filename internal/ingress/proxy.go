package ingress

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/sirupsen/logrus"
)

type backendKey struct{}

// ServeHTTP proxies a request by the current routing table: 404 when no
// rule or default backend matches, 503 when the backend is unusable (e.g.
// its Service is missing), 502 when it cannot be reached.
func (c *Controller) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := c.table.Load()
	if t == nil {
		http.Error(w, "503 service unavailable: ingress controller is starting", http.StatusServiceUnavailable)
		return
	}
	b, ok := t.Route(r.Host, r.URL.Path)
	if !ok {
		http.Error(w, "404 page not found: no Ingress rule matches this host and path", http.StatusNotFound)
		return
	}
	if b.Target == "" {
		c.log.Debugf("%s %s%s: ingress %s: %s", r.Method, r.Host, r.URL.Path, b.Ingress, b.Problem)
		http.Error(w, "503 service unavailable: the Ingress backend is not available", http.StatusServiceUnavailable)
		return
	}
	c.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), backendKey{}, b)))
}

func newReverseProxy(log logrus.FieldLogger) *httputil.ReverseProxy {
	transport := &http.Transport{
		Proxy: nil, // never an environment proxy between us and a ClusterIP
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &httputil.ReverseProxy{
		Transport: transport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			b := pr.In.Context().Value(backendKey{}).(*Backend)
			pr.SetURL(&url.URL{Scheme: "http", Host: b.Target})
			pr.Out.Host = pr.In.Host // backends see the client's Host
			// Rewrite has dropped the client's X-Forwarded-* headers; an
			// edge proxy sets its own rather than trusting the client's.
			pr.SetXForwarded()
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, context.Canceled) {
				return // the client went away
			}
			b, _ := r.Context().Value(backendKey{}).(*Backend)
			if b != nil {
				log.Debugf("%s %s%s: backend %s/%s (%s): %v", r.Method, r.Host, r.URL.Path, b.Namespace, b.Service, b.Target, err)
			}
			http.Error(w, "502 bad gateway: the Ingress backend did not answer", http.StatusBadGateway)
		},
	}
}

func (c *Controller) healthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !c.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	return mux
}
