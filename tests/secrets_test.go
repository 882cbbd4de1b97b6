package tests

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
)

// encStatus is the part of `k1s secrets-encrypt status -o json` tests read.
type encStatus struct {
	Encryption string         `json:"encryption"`
	ActiveKey  string         `json:"activeKey"`
	Keys       []string       `json:"keys"`
	Secrets    int            `json:"secrets"`
	ByKey      map[string]int `json:"secretsByKey"`
	AllActive  bool           `json:"allWithActiveKey"`
}

// k1sCmd runs a k1s subcommand against s's data dir (where it also finds
// the admin kubeconfig: the harness clears KUBECONFIG).
func k1sCmd(t *testing.T, s *harness.Server, args ...string) string {
	t.Helper()
	args = append(args, "--data-dir", s.DataDir)
	cmd := exec.Command(harness.Bin(), args...)
	cmd.Env = harness.Env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("k1s %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func encryptionStatus(t *testing.T, s *harness.Server) encStatus {
	t.Helper()
	out := k1sCmd(t, s, "secrets-encrypt", "status", "-o", "json")
	var st encStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	return st
}

// sqliteValue is the newest stored value of key in the server's SQLite
// database, read straight from the file.
func sqliteValue(t *testing.T, s *harness.Server, key string) []byte {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(s.DataDir, "server", "db", "state.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v []byte
	if err := db.QueryRow("SELECT value FROM kine WHERE name = ? ORDER BY id DESC LIMIT 1", key).Scan(&v); err != nil {
		t.Fatalf("reading %s from state.db: %v", key, err)
	}
	return v
}

// requireEncrypted fails unless raw is a secretbox value of key that does
// not contain plain.
func requireEncrypted(t *testing.T, what string, raw []byte, key, plain string) {
	t.Helper()
	if want := "k8s:enc:secretbox:v1:" + key + ":"; !bytes.HasPrefix(raw, []byte(want)) {
		t.Errorf("%s is stored as %.40q…, want it to start with %q", what, raw, want)
	}
	if bytes.Contains(raw, []byte(plain)) {
		t.Errorf("%s holds its plaintext %q", what, plain)
	}
}

// TestSecretsEncryption: Secrets are encrypted at rest by default;
// rotate-keys moves every Secret to a new key while the server runs; with
// --secrets-encryption=false new Secrets are stored in the clear and the
// encrypted ones stay readable; reencrypt encrypts them once it is back on.
func TestSecretsEncryption(t *testing.T) {
	s := startServer(t)
	const plain = "k1s-plaintext-canary-7d1f"
	if out, err := s.Kubectl("create", "secret", "generic", "canary", "--from-literal=v="+plain); err != nil {
		t.Fatal(out, err)
	}
	readBack := func(name string) {
		t.Helper()
		out, err := s.Kubectl("get", "secret", name, "-o", "jsonpath={.data.v}")
		if err != nil || strings.TrimSpace(out) != "azFzLXBsYWludGV4dC1jYW5hcnktN2QxZg==" { // base64 of plain
			t.Errorf("Secret %s reads back as %q %v, want %s in base64", name, out, err, plain)
		}
	}

	st := encryptionStatus(t, s)
	if st.Encryption != "on" || st.ActiveKey == "" || !st.AllActive || st.Secrets == 0 || st.ByKey[st.ActiveKey] != st.Secrets {
		t.Fatalf("status of a new server: %+v, want on with every Secret on the active key", st)
	}
	requireEncrypted(t, "Secret default/canary", sqliteValue(t, s, "/registry/secrets/default/canary"), st.ActiveKey, plain)
	cfgPath := filepath.Join(s.DataDir, "server", "cred", "encryption-config.json")
	if fi, err := os.Stat(cfgPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("encryption configuration %s: %v %v, want mode 0600", cfgPath, fi, err)
	}
	text := k1sCmd(t, s, "secrets-encrypt", "status")
	mustContain(t, text, "Active key: "+st.ActiveKey, "status")
	mustContain(t, text, "Every Secret is stored with the active key.", "status")

	out := k1sCmd(t, s, "secrets-encrypt", "rotate-keys")
	after := encryptionStatus(t, s)
	if after.ActiveKey == st.ActiveKey || len(after.Keys) != 1 || after.Keys[0] != after.ActiveKey || !after.AllActive {
		t.Fatalf("after rotate-keys (%s): %+v, want only a new key, every Secret on it", strings.TrimSpace(out), after)
	}
	mustContain(t, out, after.ActiveKey, "rotate-keys output")
	requireEncrypted(t, "Secret default/canary after rotation", sqliteValue(t, s, "/registry/secrets/default/canary"), after.ActiveKey, plain)
	cfg, err := os.ReadFile(cfgPath)
	if err != nil || strings.Contains(string(cfg), st.ActiveKey) {
		t.Errorf("the old key %s is still in the configuration (%v)", st.ActiveKey, err)
	}
	readBack("canary")

	// Off: new writes in the clear, old ones still readable.
	if err := s.Stop(90 * time.Second); err != nil {
		t.Fatal(err)
	}
	s.Args = append(s.Args, "--secrets-encryption=false")
	startExisting(t, s)
	if out, err := s.Kubectl("create", "secret", "generic", "clear", "--from-literal=v="+plain); err != nil {
		t.Fatal(out, err)
	}
	if raw := sqliteValue(t, s, "/registry/secrets/default/clear"); bytes.HasPrefix(raw, []byte("k8s:enc:")) {
		t.Errorf("with --secrets-encryption=false a new Secret is stored encrypted: %.40q", raw)
	}
	readBack("canary")
	readBack("clear")
	off := encryptionStatus(t, s)
	if off.Encryption != "off" || off.ByKey[""] == 0 || off.ByKey[after.ActiveKey] == 0 {
		t.Errorf("status with encryption off: %+v, want off with Secrets both in the clear and on key %s", off, after.ActiveKey)
	}

	// Back on: reencrypt moves the clear ones to the key.
	if err := s.Stop(90 * time.Second); err != nil {
		t.Fatal(err)
	}
	s.Args = replaceFlag(s.Args, "--secrets-encryption=", "--secrets-encryption=true")
	startExisting(t, s)
	on := encryptionStatus(t, s)
	if on.Encryption != "on" || on.ActiveKey != after.ActiveKey || on.AllActive {
		t.Fatalf("status turned back on: %+v, want on with key %s and some Secrets in the clear", on, after.ActiveKey)
	}
	out = k1sCmd(t, s, "secrets-encrypt", "reencrypt")
	mustContain(t, out, fmt.Sprintf("re-wrote %d Secret(s)", on.Secrets-on.ByKey[on.ActiveKey]), "reencrypt output")
	if final := encryptionStatus(t, s); !final.AllActive {
		t.Errorf("after reencrypt: %+v, want every Secret on the active key", final)
	}
	requireEncrypted(t, "Secret default/clear after reencrypt", sqliteValue(t, s, "/registry/secrets/default/clear"), on.ActiveKey, plain)
	readBack("clear")
}
