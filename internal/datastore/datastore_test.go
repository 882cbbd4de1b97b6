package datastore

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/k1s-io/k1s/internal/config"
)

func TestSQLitePath(t *testing.T) {
	for ep, want := range map[string]string{
		"sqlite:///var/lib/k1s/server/db/state.db?_journal_mode=WAL": "/var/lib/k1s/server/db/state.db",
		"sqlite:///x.db":              "/x.db",
		"sqlite://":                   "./db/state.db",
		"postgres://u:p@h:5432/k1s":   "",
		"mysql://u:p@tcp(h:3306)/k1s": "",
		"https://etcd:2379":           "",
	} {
		if got := SQLitePath(ep); got != want {
			t.Errorf("SQLitePath(%q) = %q, want %q", ep, got, want)
		}
	}
}

// testConfig is a server config with the datastore defaults of the flags.
func testConfig(t *testing.T) *config.Server {
	cfg := &config.Server{DataDir: t.TempDir()}
	cfg.Datastore.CompactInterval = config.DefaultCompactInterval
	cfg.Datastore.CompactTimeout = config.DefaultCompactTimeout
	cfg.Datastore.CompactMinRetain = config.DefaultCompactRetain
	cfg.Datastore.CompactBatchSize = config.DefaultCompactBatch
	return cfg
}

// messages returns what was logged at info level or above.
func messages(h *logtest.Hook) string {
	var b strings.Builder
	for _, e := range h.AllEntries() {
		b.WriteString(e.Message + "\n")
	}
	return b.String()
}

// The embedded SQLite gets no deadline: even a timeout far shorter than
// kine's start-up does not fail it, and the wait is explained in the log.
func TestSQLiteStartIgnoresConnectTimeout(t *testing.T) {
	cfg := testConfig(t)
	cfg.Datastore.ConnectTimeout = time.Nanosecond
	h := logtest.NewGlobal()

	s, err := Start(cfg)
	if err != nil {
		t.Fatalf("SQLite start-up failed with a 1ns --datastore-connect-timeout: %v", err)
	}
	if err := s.Stop(10 * time.Second); err != nil {
		t.Error(err)
	}
	db := filepath.Join(cfg.DBDir(), "state.db")
	if want := "still opening SQLite database " + db + " ("; !strings.Contains(messages(h), want) {
		t.Errorf("no progress line %q in the log:\n%s", want, messages(h))
	}
}

// A remote datastore keeps its deadline and the advice about the server.
func TestRemoteStartKeepsConnectTimeout(t *testing.T) {
	cfg := testConfig(t)
	// Port 1 on loopback: nothing listens, every connection is refused.
	cfg.Datastore.Endpoint = "postgres://k1s:secret@127.0.0.1:1/k1s?sslmode=disable"
	cfg.Datastore.ConnectTimeout = 2 * time.Second
	began := time.Now()
	_, err := Start(cfg)
	if err == nil {
		t.Fatal("start-up against a closed port succeeded")
	}
	for _, want := range []string{"not reachable within 2s", "database server", "postgres://k1s@127.0.0.1:1/k1s"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("error shows the password: %v", err)
	}
	if d := time.Since(began); d > 10*time.Second {
		t.Errorf("gave up after %s, want about 2s", d)
	}
}

func TestSharedSQL(t *testing.T) {
	for ep, want := range map[string]bool{
		"postgres://u@db:5432/k1s":        true,
		"postgresql://u@db/k1s":           true,
		"MySQL://u:p@tcp(db:3306)/k1s":    true,
		"sqlite:///var/lib/k1s/state.db":  false,
		"https://etcd-1:2379":             false,
		"nats://nats:4222":                false,
		"":                                false,
		"/var/lib/k1s/server/db/state.db": false,
	} {
		if got := SharedSQL(ep); got != want {
			t.Errorf("SharedSQL(%q) = %v, want %v", ep, got, want)
		}
	}
}
