// Command k1s-dashboard serves k1s's web dashboard (internal/dashboard)
// over HTTPS. It runs in its own Pod (manifests/dashboard.yaml) without a
// token of its own: users sign in with theirs.
//
//	k1s-dashboard [--listen :8443] [--api-server URL] [--ca-file FILE]
//	              [--tls-cert-file FILE --tls-key-file FILE] [--tls-san NAME,...]
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/k1s-io/k1s/internal/dashboard"
	"github.com/k1s-io/k1s/internal/selfsigned"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "k1s-dashboard:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", ":8443", "address to serve HTTPS on")
	api := flag.String("api-server", "", "Kubernetes API URL (default: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT)")
	caFile := flag.String("ca-file", "/etc/k1s-dashboard/ca/ca.crt", "CA bundle that verifies the API server")
	certFile := flag.String("tls-cert-file", "/etc/k1s-dashboard/tls/tls.crt", "serving certificate; a self-signed one is made when the file does not exist")
	keyFile := flag.String("tls-key-file", "/etc/k1s-dashboard/tls/tls.key", "key of --tls-cert-file")
	sans := flag.String("tls-san", "localhost,127.0.0.1", "comma-separated names and IPs of the self-signed certificate")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: k1s-dashboard takes only flags", flag.Arg(0))
	}
	if *api == "" {
		u, err := dashboard.InClusterAPIServer(os.Getenv)
		if err != nil {
			return err
		}
		*api = u
	}
	ca, err := os.ReadFile(*caFile)
	if err != nil {
		return fmt.Errorf("reading the API server's CA: %w (pass --ca-file)", err)
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	switch {
	case err == nil:
		log.Printf("serving with %s", *certFile)
	case errors.Is(err, fs.ErrNotExist):
		host, _ := os.Hostname()
		// A year: browsers warn about it until the user trusts it or mounts a real one.
		self, err := selfsigned.New("k1s-dashboard", append(strings.Split(*sans, ","), host), time.Now(), 365*24*time.Hour)
		if err != nil {
			return fmt.Errorf("making a self-signed certificate: %w", err)
		}
		cert = *self
		log.Printf("no certificate at %s: serving with a self-signed one", *certFile)
	default:
		return fmt.Errorf("serving certificate %s: %w", *certFile, err)
	}
	h, err := dashboard.New(dashboard.Config{APIServer: *api, CAData: ca})
	if err != nil {
		return err
	}
	srv := &http.Server{
		Addr:              *listen,
		Handler:           h,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	log.Printf("k1s-dashboard on https://%s, API %s", *listen, *api)
	return srv.ListenAndServeTLS("", "")
}
