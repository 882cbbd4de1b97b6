package agent

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/k1s-io/k1s/internal/join"
	"github.com/k1s-io/k1s/internal/pki"
)

// An agent's periodic check leaves young certificates alone and, once one
// is due, gets a fresh set from the join endpoint with its own certificate
// (the token was rotated meanwhile) and writes it.
func TestAgentRenewsDueCertificates(t *testing.T) {
	js, _, url, token := newJoinServer(t, testCluster())
	a, steps, f, got := testAgent(t, url, token)
	runUntilKubelet(t, a, steps, f)
	js.Secret = "rotated-secret-0123456789" // the renewal must not need the token
	dir := got.PKIDir()
	read := func() map[string][]byte {
		out := map[string][]byte{}
		for _, n := range pki.NodeLeafNames {
			b, err := os.ReadFile(filepath.Join(dir, n+".crt"))
			if err != nil {
				t.Fatal(err)
			}
			out[n] = b
		}
		return out
	}
	before := read()
	ctx := context.Background()
	if ev, err := a.renewCheck(ctx, time.Now()); err != nil || len(ev) != 0 {
		t.Fatalf("renewCheck with fresh certificates = %+v, %v; want nothing", ev, err)
	}
	if !mapsEqual(before, read()) {
		t.Fatal("certificates changed with nothing due")
	}

	// 250 days on, the one-year certificates have fewer than 120 days left.
	ev, err := a.renewCheck(ctx, time.Now().Add(250*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ev {
		names = append(names, e.Name)
		if !strings.HasPrefix(e.Reason, "expires in") || !strings.Contains(e.Reason, "with its node certificate") {
			t.Errorf("event %+v", e)
		}
	}
	if !slices.Equal(names, pki.NodeLeafNames) {
		t.Errorf("renewed %v, want %v", names, pki.NodeLeafNames)
	}
	after := read()
	for _, n := range pki.NodeLeafNames {
		if bytes.Equal(before[n], after[n]) {
			t.Errorf("%s.crt not replaced", n)
		}
	}
}

func mapsEqual(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// `k1s certificate rotate --service client-kube-proxy` on a joined agent's
// data dir replaces that pair only, with what the server issues to the
// node's own certificate.
func TestRotateNodeReplacesOnlyNamed(t *testing.T) {
	js, _, url, token := newJoinServer(t, testCluster())
	a, steps, f, got := testAgent(t, url, token)
	runUntilKubelet(t, a, steps, f)
	js.Secret = "rotated-secret-0123456789" // no token needed
	dir := got.PKIDir()
	snap := func() map[string][]byte {
		out := map[string][]byte{}
		paths, _ := filepath.Glob(filepath.Join(dir, "*"))
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			out[filepath.Base(p)] = b
		}
		return out
	}
	before := snap()
	names, err := join.RotateNode(context.Background(), got.AgentDir(), map[string]bool{"client-kube-proxy": true})
	if err != nil || !slices.Equal(names, []string{"client-kube-proxy"}) {
		t.Fatalf("RotateNode = %v, %v", names, err)
	}
	var changed []string
	for n, b := range snap() {
		if !bytes.Equal(before[n], b) {
			changed = append(changed, n)
		}
	}
	slices.Sort(changed)
	if !slices.Equal(changed, []string{"client-kube-proxy.crt", "client-kube-proxy.key"}) {
		t.Errorf("changed %v, want only the kube-proxy pair", changed)
	}

	if _, err := join.RotateNode(context.Background(), t.TempDir(), map[string]bool{"client-kubelet": true}); err == nil ||
		!strings.Contains(err.Error(), "has it joined?") {
		t.Errorf("RotateNode on an empty dir = %v", err)
	}
}

// With the load balancer the node's kubeconfigs name a loopback port that
// answers only while the agent runs; `k1s certificate rotate` on a stopped
// agent then reaches a server saved in apiservers.json.
func TestRotateNodeFallsBackToSavedServers(t *testing.T) {
	_, _, url, token := newJoinServer(t, testCluster())
	a, steps, f, got := testAgent(t, url, token)
	runUntilKubelet(t, a, steps, f)
	kcPath := pki.NodeFiles{Dir: got.PKIDir()}.Kubeconfig()
	kc, err := clientcmd.LoadFromFile(kcPath)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there now, as with a stopped agent's balancer
	for _, c := range kc.Clusters {
		c.Server = "https://" + dead
	}
	if err := clientcmd.WriteToFile(*kc, kcPath); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"client-kube-proxy": true}
	if _, err := join.RotateNode(context.Background(), got.AgentDir(), want); err == nil || !strings.Contains(err.Error(), dead) {
		t.Fatalf("RotateNode with the kubeconfig's server down and no saved servers = %v; want an error naming %s", err, dead)
	}
	state := filepath.Join(got.AgentDir(), "apiservers.json")
	body := `{"servers":["` + dead + `","` + strings.TrimPrefix(url, "https://") + `"]}`
	if err := os.WriteFile(state, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	names, err := join.RotateNode(context.Background(), got.AgentDir(), want)
	if err != nil || !slices.Equal(names, []string{"client-kube-proxy"}) {
		t.Fatalf("RotateNode with a saved live server = %v, %v", names, err)
	}
}
