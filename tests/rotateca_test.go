package tests

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
)

// TestRotateCA follows the steps the README gives for `k1s certificate
// rotate-ca`: refused while the server runs; with it stopped, new CAs and
// a new token; after the start, a kubeconfig copied before is refused, the
// agent restarted with the new token joins again and is Ready, and a new
// agent with the old token is refused.
func TestRotateCA(t *testing.T) {
	lab := harness.NewLab(t)
	h := lab.AddHost(t, "rca1")
	h2 := lab.AddHost(t, "rca2")
	s := startServer(t, "--tls-san", lab.GatewayIP)
	url := "https://" + net.JoinHostPort(lab.GatewayIP, strconv.Itoa(s.Port))
	tokenPath := filepath.Join(s.DataDir, "server", "token")
	oldTokBytes, err := os.ReadFile(tokenPath)
	if err != nil {
		t.Fatal(err)
	}
	oldTok := strings.TrimSpace(string(oldTokBytes))
	a := startAgentToken(t, s, lab, h, oldTok, func(string) error { return nil })
	eventually(t, time.Minute, "agent Ready", func() error { return nodeReady(s, h.Name) })
	oldKC := filepath.Join(t.TempDir(), "copied.kubeconfig")
	kc, err := os.ReadFile(s.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(oldKC, kc, 0o600); err != nil {
		t.Fatal(err)
	}

	rotate := func() (int, string) {
		code, out, err := harness.Run(60*time.Second, "certificate", "rotate-ca", "--data-dir", s.DataDir)
		if err != nil {
			t.Fatalf("k1s certificate rotate-ca: %v\n%s", err, out)
		}
		return code, out
	}
	if code, out := rotate(); code == 0 || !strings.Contains(out, "in use by another k1s") || !strings.Contains(out, "needs the server stopped") {
		t.Fatalf("rotate-ca while the server runs: exit %d, want a refusal naming the running server:\n%s", code, out)
	}
	if after, _ := os.ReadFile(tokenPath); string(after) != string(oldTokBytes) {
		t.Fatal("the refused rotate-ca changed the token")
	}

	if err := s.Stop(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	code, out := rotate()
	if code != 0 {
		t.Fatalf("k1s certificate rotate-ca: exit %d\n%s", code, out)
	}
	var newTok string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "K10") {
			newTok = l
		}
	}
	oldHash, oldSecret, _ := strings.Cut(oldTok, "::")
	newHash, newSecret, _ := strings.Cut(newTok, "::")
	if newTok == "" || newHash == oldHash || newSecret != oldSecret {
		t.Fatalf("rotate-ca printed token %q; want the old secret with a new CA hash (old token %q):\n%s", newTok, oldTok, out)
	}
	startExisting(t, s)

	if _, err := harness.Kubectl(oldKC, "get", "nodes"); err == nil {
		t.Error("a kubeconfig copied before the rotation still works")
	}
	if _, err := s.Kubectl("get", "nodes"); err != nil {
		t.Fatalf("the kubeconfig the server rewrote at start: %v", err)
	}
	if code, out, err := harness.Run(30*time.Second, "certificate", "check", "--data-dir", s.DataDir); err != nil || code != 0 {
		t.Errorf("certificate check after the rotation: exit %d %v\n%s", code, err, out)
	}

	// The agent, restarted with the new token, joins again.
	if err := a.Stop(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	for i, arg := range a.Args {
		if arg == "--token" {
			a.Args[i+1] = newTok
		}
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	if err := a.WaitLog("k1s agent is ready", 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	if !logLineWith(a.Log(), "as node "+h.Name+" (", ") with the token") {
		t.Errorf("the agent's log does not say it joined again with the token:\n%s", a.Tail(30))
	}
	eventually(t, 2*time.Minute, "agent Ready after the CA rotation", func() error { return nodeReady(s, h.Name) })

	out = runAgentOnce(t, h2, url, oldTok, "--node-name", "rca-old")
	mustContain(t, out, "does not match the token", "agent output with the token of the old CA")
	mustContain(t, out, "rotate-ca", "agent output with the token of the old CA")
	if out, _ := s.Kubectl("get", "nodes", "-o", "name"); strings.Contains(out, "rca-old") {
		t.Errorf("an agent with the old CA's token registered: %s", out)
	}
}
