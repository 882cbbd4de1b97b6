package cli

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/k1s-io/k1s/internal/join"
)

func TestReadNewToken(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tok")
	if err := os.WriteFile(file, []byte("  from-the-file-0123  \nsecond line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		flag, file, stdin, want, err string
	}{
		{flag: "from-the-flag-0123", want: "from-the-flag-0123"},
		{file: file, want: "from-the-file-0123"},
		{file: "-", stdin: "from-stdin-0123456\n", want: "from-stdin-0123456"},
		{flag: "x", file: file, err: "both given"},
		{err: "needs the new token"},
		{file: empty, err: "is empty"},
		{file: filepath.Join(t.TempDir(), "missing"), err: "reading --new-token-file"},
	} {
		got, err := readNewToken(c.flag, c.file, strings.NewReader(c.stdin))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("readNewToken(%q, %q) = %q, %v; want error %q", c.flag, c.file, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("readNewToken(%q, %q) = %q, %v; want %q", c.flag, c.file, got, err, c.want)
		}
	}
}

func TestWriteTokenTable(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	writeTokenTable(&buf, []join.BootstrapToken{
		{ID: "abcdef", Description: "edge rollout", Usages: []string{"authentication"}, Expires: now.Add(90 * time.Minute)},
		{ID: "expird", Usages: []string{"authentication", "signing"}, Expires: now.Add(-time.Minute)},
		{ID: "frever"},
	}, now)
	want := []string{
		"ID      TTL        EXPIRES               USAGES                  DESCRIPTION",
		"abcdef  1h30m0s    2026-12-01T13:30:00Z  authentication          edge rollout",
		"expird  <expired>  2026-12-01T11:59:00Z  authentication,signing",
		"frever  <forever>  <never>               <none>",
	}
	got := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	if len(got) != len(want) {
		t.Fatalf("table:\n%s", buf.String())
	}
	for i := range want {
		if strings.TrimRight(got[i], " ") != want[i] {
			t.Errorf("line %d:\n got %q\nwant %q", i, got[i], want[i])
		}
	}
}

// Bad input is refused before any server is contacted.
func TestTokenCommandRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	// A kubeconfig of a server that is not running: nothing listens on the port.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "https://" + l.Addr().String()
	l.Close()
	kc := filepath.Join(dir, "down.kubeconfig")
	if err := os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \""+down+"\", insecure-skip-tls-verify: true}}]\n"+
		"users: [{name: u, user: {token: x}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		err  string
	}{
		{[]string{"create", "--ttl", "-5m"}, "invalid --ttl -5m0s"},
		{[]string{"create", "--ttl", "soon"}, `invalid value "soon" for flag -ttl`},
		{[]string{"create", "--usages", "authentication,join"}, "invalid bootstrap token usage string: join"},
		{[]string{"create", "--data-dir", dir}, "no admin kubeconfig at " + dir + "/server/cred/admin.kubeconfig"},
		{[]string{"list", "--data-dir", dir}, "pass the server's --data-dir, or --kubeconfig"},
		{[]string{"delete", "--data-dir", dir}, "needs the id of a token"},
		{[]string{"delete", "abcdef", "--data-dir", dir}, "--data-dir after an id: flags go before the ids"},
		{[]string{"list", "extra"}, `unexpected argument "extra"`},
		{[]string{"rotate", "--data-dir", dir, "--new-token", "0123456789abcdef0"}, "is --data-dir the server's data dir"},
		{[]string{"rotate", "--data-dir", dir}, "needs the new token"},
		{[]string{"list", "--kubeconfig", kc}, "cannot reach the k1s server at " + down},
		{[]string{"create", "--kubeconfig", kc}, "is it running?"},
		{[]string{"delete", "--kubeconfig", kc, "abcdef"}, "cannot reach the k1s server at " + down},
	} {
		var out, errOut bytes.Buffer
		t.Setenv("KUBECONFIG", "")
		err := newApp(&out, &errOut).Run(append([]string{"k1s", "token"}, c.args...))
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("k1s token %v: err = %v, want %q", c.args, err, c.err)
		}
	}
}
