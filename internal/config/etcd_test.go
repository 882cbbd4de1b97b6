package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mkfile creates path (and its directory) for a test.
func mkfile(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestClusterInitRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(t *testing.T, s *Server)
		want   []string
	}{
		{"with datastore endpoint", func(t *testing.T, s *Server) {
			s.ClusterInit, s.Datastore.Endpoint = true, "postgres://u:pw@db/k1s"
		}, []string{"--cluster-init", "--datastore-endpoint", "one of them"}},
		{"over SQLite data", func(t *testing.T, s *Server) {
			s.ClusterInit = true
			mkfile(t, s.SQLiteDB())
		}, []string{"--cluster-init", "state.db", "cannot convert SQLite to etcd", "without --cluster-init", "new --data-dir"}},
		{"etcd data and datastore endpoint", func(t *testing.T, s *Server) {
			s.Datastore.Endpoint = "postgres://u:pw@db/k1s"
			if err := os.MkdirAll(filepath.Join(s.EtcdDir(), "member"), 0o700); err != nil {
				t.Fatal(err)
			}
		}, []string{"embedded etcd", "--datastore-endpoint"}},
		{"etcd and SQLite data", func(t *testing.T, s *Server) {
			mkfile(t, s.SQLiteDB())
			if err := os.MkdirAll(filepath.Join(s.EtcdDir(), "member"), 0o700); err != nil {
				t.Fatal(err)
			}
		}, []string{"both a SQLite datastore", "embedded etcd"}},
		{"server with cluster init", func(t *testing.T, s *Server) {
			s.ServerURL, s.Token, s.ClusterInit = "https://192.0.2.1:6443", "0123456789abcdef0123", true
		}, []string{"--cluster-init", "--server", "one of them"}},
		{"server with datastore endpoint", func(t *testing.T, s *Server) {
			s.ServerURL, s.Token, s.Datastore.Endpoint = "https://192.0.2.1:6443", "0123456789abcdef0123", "postgres://u:pw@db/k1s"
		}, []string{"--server", "--datastore-endpoint"}},
		{"server without token", func(t *testing.T, s *Server) { s.ServerURL = "https://192.0.2.1:6443" }, []string{"--server needs", "--token"}},
		{"server not https", func(t *testing.T, s *Server) {
			s.ServerURL, s.Token = "http://192.0.2.1:6443", "0123456789abcdef0123"
		}, []string{`invalid --server "http://192.0.2.1:6443"`}},
		{"server over SQLite data", func(t *testing.T, s *Server) {
			s.ServerURL, s.Token = "https://192.0.2.1:6443", "0123456789abcdef0123"
			mkfile(t, s.SQLiteDB())
		}, []string{"cannot convert SQLite to etcd"}},
		{"cluster reset restore path without etcd data", func(t *testing.T, s *Server) {
			s.ClusterInit = true
			s.Snapshots.ClusterReset, s.Snapshots.RestorePath = true, "/x.db"
		}, []string{"--cluster-reset-restore-path", "holds no etcd data", "the server the snapshot was taken from"}},
		{"restore path without reset on etcd", func(t *testing.T, s *Server) {
			if err := os.MkdirAll(filepath.Join(s.EtcdDir(), "member"), 0o700); err != nil {
				t.Fatal(err)
			}
			s.Snapshots.RestorePath = "/x.db"
		}, []string{"--cluster-reset-restore-path needs --cluster-reset"}},
		{"restore missing file on etcd", func(t *testing.T, s *Server) {
			if err := os.MkdirAll(filepath.Join(s.EtcdDir(), "member"), 0o700); err != nil {
				t.Fatal(err)
			}
			s.Snapshots.ClusterReset, s.Snapshots.RestorePath = true, "/nonexistent/x.db"
		}, []string{"--cluster-reset-restore-path", "no such file"}},
		{"snapshot schedule on etcd", func(t *testing.T, s *Server) {
			s.ClusterInit = true
			s.Snapshots.Schedule = "sometimes"
		}, []string{`invalid --snapshot-schedule "sometimes"`}},
		{"snapshot retention on etcd", func(t *testing.T, s *Server) {
			s.ClusterInit = true
			s.Snapshots.Retention = 0
		}, []string{"invalid --snapshot-retention 0"}},
		{"cluster reset without etcd data", func(t *testing.T, s *Server) {
			s.ClusterInit = true
			s.Snapshots.ClusterReset = true
		}, []string{"--cluster-reset", "holds no etcd data"}},
		{"remove member on a datastore endpoint", func(t *testing.T, s *Server) {
			s.RemoveMember, s.Datastore.Endpoint = true, "postgres://u:pw@db/k1s"
		}, []string{"--remove-member is for embedded etcd", "no members", "kubectl delete node"}},
		{"remove member on SQLite data", func(t *testing.T, s *Server) {
			s.RemoveMember = true
			mkfile(t, s.SQLiteDB())
		}, []string{"--remove-member is for embedded etcd", "SQLite", "state.db"}},
		{"remove member without etcd data", func(t *testing.T, s *Server) {
			s.RemoveMember, s.ClusterInit = true, true
		}, []string{"--remove-member is for embedded etcd", "no etcd member data", "--data-dir"}},
		{"remove member with cluster reset", func(t *testing.T, s *Server) {
			s.RemoveMember, s.Snapshots.ClusterReset = true, true
			if err := os.MkdirAll(filepath.Join(s.EtcdDir(), "member"), 0o700); err != nil {
				t.Fatal(err)
			}
		}, []string{"--remove-member", "--cluster-reset", "one of them"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := validServer(t)
			tc.modify(t, s)
			err := prepare(s)
			if err == nil {
				t.Fatalf("Validate() = nil, want an error containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestEmbeddedEtcdChoice: --cluster-init picks etcd, and so does a data dir
// holding etcd data without the flag (a restart); SQLite otherwise.
func TestEmbeddedEtcdChoice(t *testing.T) {
	s := validServer(t)
	if err := prepare(s); err != nil {
		t.Fatal(err)
	}
	if s.EmbeddedEtcd() {
		t.Error("a fresh data dir without --cluster-init chose etcd")
	}
	s.ClusterInit = true
	if err := s.Validate(); err != nil || !s.EmbeddedEtcd() {
		t.Errorf("--cluster-init: Validate %v, EmbeddedEtcd %v", err, s.EmbeddedEtcd())
	}
	if got, want := s.EtcdDir(), filepath.Join(s.DataDir, "server", "db", "etcd"); got != want {
		t.Errorf("EtcdDir = %s, want %s", got, want)
	}
	if got, want := s.EtcdTLSDir(), filepath.Join(s.DataDir, "server", "tls", "etcd"); got != want {
		t.Errorf("EtcdTLSDir = %s, want %s", got, want)
	}
	s.ClusterInit = false
	if err := os.MkdirAll(filepath.Join(s.EtcdDir(), "member"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil || !s.EmbeddedEtcd() {
		t.Errorf("restart on etcd data without --cluster-init: Validate %v, EmbeddedEtcd %v", err, s.EmbeddedEtcd())
	}
	// --cluster-reset alone is accepted on etcd data.
	s.Snapshots.ClusterReset = true
	if err := s.Validate(); err != nil {
		t.Errorf("--cluster-reset on etcd data: %v", err)
	}
	// So is a snapshot to restore (its kind is checked when it is restored).
	snap := filepath.Join(t.TempDir(), "s.db")
	mkfile(t, snap)
	s.Snapshots.RestorePath = snap
	if err := s.Validate(); err != nil {
		t.Errorf("--cluster-reset-restore-path on etcd data: %v", err)
	}
	s.Snapshots.ClusterReset, s.Snapshots.RestorePath = false, ""
	// --remove-member on etcd data, with the server's usual flags.
	s.RemoveMember, s.ServerURL, s.Token = true, "https://192.0.2.1:6443", "0123456789abcdef0123"
	if err := s.Validate(); err != nil {
		t.Errorf("--remove-member on etcd data: %v", err)
	}
	s.RemoveMember, s.ServerURL, s.Token = false, "", ""
	// A joined server restarts with its --server flag but no token.
	s.ServerURL = "https://192.0.2.1:6443"
	if err := s.Validate(); err != nil || !s.EmbeddedEtcd() {
		t.Errorf("restart of a joined server: Validate %v, EmbeddedEtcd %v", err, s.EmbeddedEtcd())
	}
}
