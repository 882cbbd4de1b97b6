package tests

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
)

// k1sToken runs `k1s token SUBCOMMAND --data-dir DIR ARGS...` against s
// and returns its exit code and combined output.
func k1sToken(t *testing.T, s *harness.Server, sub string, args ...string) (int, string) {
	t.Helper()
	code, out, err := harness.Run(30*time.Second, append([]string{"token", sub, "--data-dir", s.DataDir}, args...)...)
	if err != nil {
		t.Fatalf("k1s token %v: %v\n%s", args, err, out)
	}
	return code, out
}

// createToken runs `k1s token create` and returns the printed K10 token
// and its id.
func createToken(t *testing.T, s *harness.Server, args ...string) (tok, id string) {
	t.Helper()
	code, out := k1sToken(t, s, "create", args...)
	if code != 0 {
		t.Fatalf("k1s token create %v: exit %d\n%s", args, code, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "K10") {
			tok = l
		}
	}
	_, creds, _ := strings.Cut(tok, "::")
	id, _, ok := strings.Cut(creds, ".")
	if !ok || len(id) != 6 {
		t.Fatalf("k1s token create printed no K10<hash>::<id>.<secret> token:\n%s", out)
	}
	return tok, id
}

func nodeReady(s *harness.Server, name string) error {
	out, err := s.Kubectl("get", "node", name, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
	if err != nil || out != "True" {
		return fmt.Errorf("node %s Ready=%q %v", name, out, err)
	}
	return nil
}

// TestJoinTokens: bootstrap tokens made by `k1s token create` join an
// agent like the server token; a deleted, expired or malformed one is
// refused; `k1s token rotate` refuses the old server token and accepts the
// new one at once, while a joined agent stays Ready; agents restarted after
// their token was rotated away or deleted come back with their own node
// certificates, and a new agent with such a token is refused. One server
// for all.
func TestJoinTokens(t *testing.T) {
	lab := harness.NewLab(t)
	h := lab.AddHost(t, "tok1")
	s := startServer(t, "--tls-san", lab.GatewayIP)
	url := "https://" + net.JoinHostPort(lab.GatewayIP, strconv.Itoa(s.Port))
	serverTok, err := os.ReadFile(filepath.Join(s.DataDir, "server", "token"))
	if err != nil {
		t.Fatal(err)
	}
	hashPart, _, _ := strings.Cut(strings.TrimSpace(string(serverTok)), "::")
	noImages := func(string) error { return nil }

	tok, id := createToken(t, s, "--ttl", "10m", "--description", "e2e join")
	if !strings.HasPrefix(tok, hashPart+"::") {
		t.Fatalf("created token %q does not carry the server's CA hash %q", tok, hashPart)
	}
	if out, err := s.Kubectl("-n", "kube-system", "get", "secret", "bootstrap-token-"+id, "-o",
		"jsonpath={.type} {.data.usage-bootstrap-authentication}"); err != nil || out != "bootstrap.kubernetes.io/token dHJ1ZQ==" {
		t.Fatalf("bootstrap token Secret: %q %v", out, err)
	}
	code, out := k1sToken(t, s, "list")
	if code != 0 || !strings.Contains(out, "ID  ") {
		t.Fatalf("k1s token list: exit %d\n%s", code, out)
	}
	var row string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, id+" ") {
			row = l
		}
	}
	f := strings.Fields(row)
	if len(f) < 6 || f[3] != "authentication" || strings.Join(f[4:], " ") != "e2e join" {
		t.Fatalf("k1s token list row of %s = %q, want authentication, e2e join:\n%s", id, row, out)
	}
	// Expiry is kept to the second, rounded up.
	if left, err := time.ParseDuration(f[1]); err != nil || left < 9*time.Minute || left > 10*time.Minute {
		t.Fatalf("k1s token list: %s has %q left, want 9–10 min:\n%s", id, f[1], out)
	}
	if strings.Contains(out, tok[strings.LastIndex(tok, ".")+1:]) {
		t.Errorf("k1s token list shows a token's secret:\n%s", out)
	}

	// The agent joined with a bootstrap token is the one that must stay
	// Ready across the server token's rotation below.
	a1 := startAgentToken(t, s, lab, h, tok, noImages)
	eventually(t, time.Minute, "agent joined with a bootstrap token Ready", func() error { return nodeReady(s, h.Name) })

	t.Run("deleted", func(t *testing.T) {
		tok, id := createToken(t, s, "--ttl", "10m")
		if code, out := k1sToken(t, s, "delete", id); code != 0 || !strings.Contains(out, "bootstrap token "+id+" deleted") {
			t.Fatalf("k1s token delete: exit %d\n%s", code, out)
		}
		out := runAgentOnce(t, h, url, tok, "--node-name", "tok-deleted")
		mustContain(t, out, "refused the token (wrong token)", "agent output")
		code, out := k1sToken(t, s, "delete", id)
		if code == 0 || !strings.Contains(out, `no such bootstrap token with id "`+id+`"`) {
			t.Errorf("deleting it again: exit %d\n%s", code, out)
		}
	})

	t.Run("expired", func(t *testing.T) {
		tok, id := createToken(t, s, "--ttl", "5s")
		created := time.Now()
		time.Sleep(time.Until(created.Add(6 * time.Second)))
		out := runAgentOnce(t, h, url, tok, "--node-name", "tok-expired")
		// The join check refuses it at once ("expired at"); the token
		// cleaner may have deleted it already ("wrong token").
		if !strings.Contains(out, "refused the token (bootstrap token "+id+" expired at") && !strings.Contains(out, "refused the token (wrong token)") {
			t.Fatalf("agent with an expired token:\n%s", out)
		}
		t.Logf("refused: expired at once: %v", strings.Contains(out, "expired at"))
		// The controller-manager's token cleaner removes it.
		eventually(t, 30*time.Second, "expired token removed by the token cleaner", func() error {
			if _, err := s.Kubectl("-n", "kube-system", "get", "secret", "bootstrap-token-"+id); err == nil {
				return fmt.Errorf("bootstrap-token-%s still exists", id)
			}
			return nil
		})
	})

	t.Run("malformed", func(t *testing.T) {
		out := runAgentOnce(t, h, url, hashPart+"::abcdef.tooshort", "--node-name", "tok-malformed")
		mustContain(t, out, "token is malformed", "agent output")
		mustContain(t, out, "from 'k1s token create'", "agent output")
		// A bare <id>.<secret> pins no CA: refused without the flag.
		_, creds, _ := strings.Cut(tok, "::")
		out = runAgentOnce(t, h, url, creds, "--node-name", "tok-bare")
		mustContain(t, out, "--insecure-skip-ca-check", "agent output")
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"create", "--ttl", "-1h"}, "invalid --ttl -1h0m0s"},
			{[]string{"create", "--usages", "join"}, "invalid bootstrap token usage string: join"},
			{[]string{"delete", "ABC"}, `invalid token id "ABC"`},
		} {
			if code, out := k1sToken(t, s, c.args[0], c.args[1:]...); code == 0 || !strings.Contains(out, c.want) {
				t.Errorf("k1s token %v: exit %d, want an error with %q:\n%s", c.args, code, c.want, out)
			}
		}
	})

	t.Run("rotate", func(t *testing.T) {
		old := strings.TrimSpace(string(serverTok))
		file := filepath.Join(t.TempDir(), "new-token")
		if err := os.WriteFile(file, []byte("rotated-secret-0123456789\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		short := filepath.Join(t.TempDir(), "short")
		if err := os.WriteFile(short, []byte("too-short\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if code, out := k1sToken(t, s, "rotate", "--new-token-file", short); code == 0 || !strings.Contains(out, "at least 16 are needed") {
			t.Fatalf("rotate to a short token: exit %d\n%s", code, out)
		}
		code, out := k1sToken(t, s, "rotate", "--new-token-file", file)
		want := hashPart + "::server:rotated-secret-0123456789"
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("k1s token rotate: exit %d, want %q in:\n%s", code, want, out)
		}
		if data, _ := os.ReadFile(filepath.Join(s.DataDir, "server", "token")); strings.TrimSpace(string(data)) != want {
			t.Fatalf("server token file holds %q, want %q", data, want)
		}
		out = runAgentOnce(t, h, url, old, "--node-name", "tok-old")
		mustContain(t, out, "refused the token (wrong token)", "agent output with the old server token")

		h2 := lab.AddHost(t, "tok2")
		a2 := startAgentToken(t, s, lab, h2, want, noImages)
		eventually(t, time.Minute, "agent joined with the new server token Ready", func() error { return nodeReady(s, h2.Name) })
		if err := nodeReady(s, h.Name); err != nil {
			t.Errorf("the agent joined before the rotation: %v", err)
		}

		// Restarted agents re-authenticate with their node certificates: a2's
		// server token is rotated away, a1's bootstrap token is deleted, and
		// both come back with the token they were started with (a2 lives as
		// long as this subtest).
		t.Run("restart", func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "new-token")
			if err := os.WriteFile(file, []byte("rotated-again-0123456789\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if code, out := k1sToken(t, s, "rotate", "--new-token-file", file); code != 0 {
				t.Fatalf("k1s token rotate: exit %d\n%s", code, out)
			}
			if code, out := k1sToken(t, s, "delete", id); code != 0 {
				t.Fatalf("k1s token delete %s: exit %d\n%s", id, code, out)
			}
			for _, c := range []struct {
				a    *harness.Server
				name string
			}{{a1, h.Name}, {a2, h2.Name}} {
				certPath := filepath.Join(c.a.DataDir, "agent", "pki", "client-kubelet.crt")
				before, err := os.ReadFile(certPath)
				if err != nil {
					t.Fatal(err)
				}
				if err := c.a.Stop(60 * time.Second); err != nil {
					t.Fatalf("stopping the agent of %s: %v", c.name, err)
				}
				started := time.Now()
				if err := c.a.Start(); err != nil { // same arguments: the old token
					t.Fatal(err)
				}
				if err := c.a.WaitLog("k1s agent is ready", 3*time.Minute); err != nil {
					t.Fatalf("%s restarted with its old token: %v", c.name, err)
				}
				t.Logf("%s back in %s", c.name, time.Since(started).Round(time.Millisecond))
				if !logLineWith(c.a.Log(), "as node "+c.name+" (", ") with its node certificate") {
					t.Errorf("%s: the log does not say it joined with its node certificate:\n%s", c.name, c.a.Tail(30))
				}
				after, err := os.ReadFile(certPath)
				if err != nil || string(after) == string(before) {
					t.Errorf("%s: the re-authentication did not renew the kubelet certificate (%v)", c.name, err)
				}
				eventually(t, time.Minute, c.name+" Ready after its restart", func() error { return nodeReady(s, c.name) })
			}
			// A new agent with the token rotated away is still refused.
			out := runAgentOnce(t, h2, url, want, "--node-name", "tok-rotated")
			mustContain(t, out, "refused the token (wrong token)", "agent output with the rotated-away server token")

			// The server restarted with a retired token (left in its unit or
			// config file) keeps the current one.
			tokFile := filepath.Join(t.TempDir(), "old-token")
			if err := os.WriteFile(tokFile, []byte(old+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := s.Stop(60 * time.Second); err != nil {
				t.Fatal(err)
			}
			s.Args = append(s.Args, "--token-file", tokFile)
			startExisting(t, s)
			mustContain(t, s.Log(), "kept server token", "server log after a restart with the retired token")
			if data, _ := os.ReadFile(filepath.Join(s.DataDir, "server", "token")); !strings.HasSuffix(strings.TrimSpace(string(data)), "::server:rotated-again-0123456789") {
				t.Errorf("after a restart with the retired token the token file holds %q, want the current token", data)
			}
			out = runAgentOnce(t, h2, url, old, "--node-name", "tok-revived")
			mustContain(t, out, "refused the token (wrong token)", "agent output with the retired token the server was restarted with")
		})
	})

	out, _ = s.Kubectl("get", "nodes", "-o", "name")
	if strings.Contains(out, "tok-") {
		t.Errorf("a refused agent registered a node: %s", out)
	}
}

// logLineWith reports whether one line of log contains all of subs.
func logLineWith(log string, subs ...string) bool {
	for _, l := range strings.Split(log, "\n") {
		all := true
		for _, sub := range subs {
			all = all && strings.Contains(l, sub)
		}
		if all {
			return true
		}
	}
	return false
}
