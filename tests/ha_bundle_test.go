package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
)

// TestHABundleUpdates: on three servers sharing an embedded etcd, what
// one server changes in the cluster's shared files reaches the others.
//   - `k1s secrets-encrypt rotate-keys` on server 1 waits until every
//     server's apiserver has each step's keys; afterwards all have the same
//     configuration, every Secret is stored with the new key, and Secrets
//     written through one server read through another.
//   - `k1s token rotate` on server 1: the others' token files take the new
//     token within seconds.
//   - `k1s certificate rotate-ca` on server 1, stopped while the others
//     run: it publishes the new CAs at its start; the others ask for a
//     restart, and server 2 takes them at its restart (keeping the old
//     files) and serves with certificates issued from them.
func TestHABundleUpdates(t *testing.T) {
	lab := harness.NewLab(t)
	h1, h2, h3 := lab.AddHost(t, "b1"), lab.AddHost(t, "b2"), lab.AddHost(t, "b3")
	a := newLabServer(t, h1, 0, "--cluster-init")
	keepLogsOnFailure(t, a)
	startExisting(t, a)
	tokenB, err := os.ReadFile(filepath.Join(a.DataDir, "server", "token"))
	if err != nil {
		t.Fatal(err)
	}
	var others []*harness.Server
	for _, h := range []*harness.NetHost{h2, h3} {
		s := newLabServer(t, h, a.Port, "--server", "https://"+a.Addr(), "--token", strings.TrimSpace(string(tokenB)))
		keepLogsOnFailure(t, s)
		startExisting(t, s)
		others = append(others, s)
	}
	b, c := others[0], others[1]
	kc := a.Kubeconfig
	if out, err := kubectlVia(kc, a, "create", "secret", "generic", "before", "--from-literal=k=v1"); err != nil {
		t.Fatalf("%s %v", out, err)
	}
	enc := func(s *harness.Server) string {
		data, err := os.ReadFile(filepath.Join(s.DataDir, "server", "cred", "encryption-config.json"))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	before := enc(b)

	began := time.Now()
	out, err := k1sIn(h1, a, "secrets-encrypt", "rotate-keys")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("BENCH rotate-keys across three servers took %s:\n%s", time.Since(began).Round(100*time.Millisecond), out)
	if n := strings.Count(out, "waiting for every server to load it"); n != 3 {
		t.Errorf("rotate-keys waited for the servers %d times, want 3 (add, activate, drop)", n)
	}
	for _, s := range others {
		if got := enc(s); got != enc(a) || got == before {
			t.Errorf("%s's encryption configuration is not server 1's new one (changed: %v)", s.Host, got != before)
		}
		if err := s.WaitLog("encryption-config.json from the cluster's bootstrap bundle", time.Second); err != nil {
			t.Error(err)
		}
	}
	var st encStatus
	out, err = k1sIn(h2, b, "secrets-encrypt", "status", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if st.Encryption != "on" || len(st.Keys) != 1 || !st.AllActive || st.Secrets == 0 {
		t.Errorf("status on server 2 after the rotation: %+v; want one key, every Secret stored with it", st)
	}
	if out, err := kubectlVia(kc, b, "create", "secret", "generic", "after", "--from-literal=k=v2"); err != nil {
		t.Fatalf("%s %v", out, err)
	}
	for _, r := range []struct {
		s          *harness.Server
		name, want string
	}{{b, "before", "djE="}, {a, "after", "djI="}} {
		if out, err := kubectlVia(kc, r.s, "get", "secret", r.name, "-o", "jsonpath={.data.k}"); err != nil || out != r.want {
			t.Errorf("Secret %s through %s: %q %v, want %q", r.name, r.s.Host, out, err, r.want)
		}
	}

	// `k1s token rotate` on server 1: the others take the new token.
	newSecret := fmt.Sprintf("%x", time.Now().UnixNano()) + "00112233445566778899"
	tf := filepath.Join(t.TempDir(), "new-token")
	if err := os.WriteFile(tf, []byte(newSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, err := harness.Run(60*time.Second, "token", "rotate", "--data-dir", a.DataDir, "--new-token-file", tf); err != nil || code != 0 {
		t.Fatalf("token rotate: exit %d %v\n%s", code, err, out)
	}
	rotated := time.Now()
	eventually(t, 30*time.Second, "servers 2 and 3 take the rotated server token", func() error {
		for _, s := range others {
			data, err := os.ReadFile(filepath.Join(s.DataDir, "server", "token"))
			if err != nil {
				return err
			}
			if !strings.HasSuffix(strings.TrimSpace(string(data)), "::server:"+newSecret) {
				return fmt.Errorf("%s's token file still holds another secret", s.Host)
			}
		}
		return nil
	})
	t.Logf("BENCH the other servers took the rotated token %s after the rotation", time.Since(rotated).Round(100*time.Millisecond))
	if err := c.WaitLog("the server token was rotated on another server", time.Second); err != nil {
		t.Error(err)
	}

	// rotate-ca on server 1, stopped; the others keep the quorum.
	if err := a.Stop(90 * time.Second); err != nil {
		t.Fatal(err)
	}
	oldCA, _ := os.ReadFile(filepath.Join(b.DataDir, "server", "tls", "server-ca.crt"))
	code, rot, err := harness.Run(60*time.Second, "certificate", "rotate-ca", "--data-dir", a.DataDir)
	if err != nil || code != 0 {
		t.Fatalf("rotate-ca: exit %d %v\n%s", code, err, rot)
	}
	newToken := ""
	for _, l := range strings.Split(rot, "\n") {
		if strings.HasPrefix(l, "K10") {
			newToken = strings.TrimSpace(l)
		}
	}
	if newToken == "" {
		t.Fatalf("no token in rotate-ca's output:\n%s", rot)
	}
	a.Args = withoutArg(a.Args, "--cluster-init")
	startExisting(t, a)
	if err := a.WaitLog("published tls/", time.Second); err != nil {
		t.Error(err)
	}
	for _, s := range others {
		if err := s.WaitLog("restart this server to take them", 30*time.Second); err != nil {
			t.Error(err)
		}
	}
	// Server 2 restarts with the new token (its old one names the old CA).
	if err := b.Stop(90 * time.Second); err != nil {
		t.Fatal(err)
	}
	i := slices.Index(b.Args, "--token")
	b.Args[i+1] = newToken
	startExisting(t, b)
	if err := b.WaitLog("the cluster's CAs were replaced on another server", time.Second); err != nil {
		t.Error(err)
	}
	caA, _ := os.ReadFile(filepath.Join(a.DataDir, "server", "tls", "server-ca.crt"))
	caB, _ := os.ReadFile(filepath.Join(b.DataDir, "server", "tls", "server-ca.crt"))
	if len(caA) == 0 || string(caA) != string(caB) || string(caB) == string(oldCA) {
		t.Errorf("server 2's CA is not server 1's new one (equal %v, changed %v)", string(caA) == string(caB), string(caB) != string(oldCA))
	}
	if kept, _ := filepath.Glob(filepath.Join(b.DataDir, "server", "bootstrap-replaced-*", "tls", "server-ca.crt")); len(kept) != 1 {
		t.Errorf("server 2 kept its old CA in %v, want one backup", kept)
	}
	for _, s := range []*harness.Server{a, b} {
		if out, err := kubectlVia(a.Kubeconfig, s, "get", "secret", "before", "-o", "jsonpath={.data.k}"); err != nil || out != "djE=" {
			t.Errorf("server 1's new admin kubeconfig against %s: %q %v", s.Host, out, err)
		}
	}
	if out, err := kubectlVia(b.Kubeconfig, b, "get", "--raw", "/readyz"); err != nil || strings.TrimSpace(out) != "ok" {
		t.Errorf("server 2's own admin kubeconfig: %q %v", out, err)
	}
}
