package join

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/k1s-io/k1s/internal/apilb"
	"github.com/k1s-io/k1s/internal/pki"
)

// RotateNode renews the named certificates of a joined agent now, from
// outside the agent process (`k1s certificate rotate` on an agent's data
// dir): an agent holds no CA, so it re-authenticates at the join endpoint
// of the server its kubelet kubeconfig names, with the node's client
// certificate and node password, and writes only the named pairs of what
// the server issues. The running agent's components reload the files.
// With the agent's load balancer that server is a loopback port that only
// answers while the agent runs (and only in its network namespace), so
// when it cannot be reached the servers the balancer saved in
// apiservers.json are tried in turn.
func RotateNode(ctx context.Context, agentDir string, want map[string]bool) ([]string, error) {
	dir := filepath.Join(agentDir, "pki")
	f := pki.NodeFiles{Dir: dir}
	kc, err := clientcmd.LoadFromFile(f.Kubeconfig())
	if err != nil {
		return nil, fmt.Errorf("%w: is this a k1s node's data dir, and has it joined?", err)
	}
	var url string
	for _, c := range kc.Clusters {
		url = c.Server
	}
	if url == "" {
		return nil, fmt.Errorf("%s names no server", f.Kubeconfig())
	}
	node, ip, err := nodeOf(f)
	if err != nil {
		return nil, err
	}
	pwPath := filepath.Join(agentDir, "node-password")
	if _, err := os.Stat(pwPath); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no node password at %s: this node has not joined", pwPath)
	}
	password, err := NodePassword(pwPath)
	if err != nil {
		return nil, err
	}
	id, err := LoadIdentity(dir, node, pki.Token{}, time.Now())
	if err != nil {
		return nil, fmt.Errorf("the node's certificate cannot re-authenticate (%w): restart the agent with a token from 'k1s token create'", err)
	}
	urls := []string{strings.TrimRight(url, "/")}
	saved, savedErr := apilb.Saved(filepath.Join(agentDir, "apiservers.json"))
	for _, s := range saved {
		if u := "https://" + s; !slices.Contains(urls, u) {
			urls = append(urls, u)
		}
	}
	resp, err := rejoinAny(ctx, urls, Request{NodeName: node, NodeIP: ip, Password: password}, id)
	if err != nil && savedErr != nil {
		return nil, fmt.Errorf("%w (and the other servers are unknown: %v)", err, savedErr)
	}
	if err != nil {
		return nil, err
	}
	if err := pki.WriteNodeSome(dir, &resp.Certs, want); err != nil {
		return nil, err
	}
	var names []string
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

// rejoinAny re-authenticates at the first of urls that answers. A refusal
// ends it: every server of a cluster would refuse the same way.
func rejoinAny(ctx context.Context, urls []string, req Request, id *Identity) (*Response, error) {
	var errs []error
	for _, u := range urls {
		resp, err := (&Client{URL: u}).Rejoin(ctx, req, id)
		var refused *CertRefused
		if err == nil || errors.As(err, &refused) || IsPermanent(err) {
			return resp, err
		}
		errs = append(errs, fmt.Errorf("%s: %w", u, err))
	}
	return nil, fmt.Errorf("no server answered: %w", errors.Join(errs...))
}

// nodeOf reads the node's name (its kubelet client certificate) and IP
// (its serving certificate's address that is not loopback).
func nodeOf(f pki.NodeFiles) (string, string, error) {
	client, err := readCert(f.ClientCert())
	if err != nil {
		return "", "", err
	}
	name, ok := strings.CutPrefix(client.Subject.CommonName, nodeUserPrefix)
	if !ok || name == "" {
		return "", "", fmt.Errorf("%s is not a node's certificate (%s)", f.ClientCert(), client.Subject.CommonName)
	}
	serving, err := readCert(f.ServingCert())
	if err != nil {
		return "", "", err
	}
	for _, ip := range serving.IPAddresses {
		if !ip.IsLoopback() {
			return name, ip.String(), nil
		}
	}
	return "", "", fmt.Errorf("%s names no node IP", f.ServingCert())
}

func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := pki.ParseCert(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
