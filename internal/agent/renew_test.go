package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

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
