package tests

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
)

// postgres is a throwaway PostgreSQL server on a loopback port, run as the
// postgres user from Debian's package, with its own data directory.
type postgres struct {
	Port int
	bin  string
	dir  string
	cmd  *exec.Cmd
	done chan error
}

func postgresBin(t *testing.T) string {
	t.Helper()
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(matches) == 0 {
		t.Fatal("PostgreSQL is not installed: run `make deps` (installs Debian's postgresql package)")
	}
	return filepath.Dir(matches[len(matches)-1])
}

// startPostgres starts it on 127.0.0.1 and on the extra addresses (a
// lab's gateway, for servers in lab hosts), trusting any client there.
func startPostgres(t *testing.T, extra ...string) *postgres {
	t.Helper()
	pg := &postgres{bin: postgresBin(t), done: make(chan error, 1)}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("no postgres user (Debian's postgresql package creates it): %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// PostgreSQL refuses to run as root and must reach its directory.
	pg.dir, err = os.MkdirTemp("", "k1s-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pg.dir) })
	if err := os.Chmod(pg.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, sock := filepath.Join(pg.dir, "data"), filepath.Join(pg.dir, "sock")
	for _, d := range []string{data, sock} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	asPostgres := &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	initdb := exec.Command(filepath.Join(pg.bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
	initdb.SysProcAttr = asPostgres
	initdb.Dir = pg.dir
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	if len(extra) > 0 {
		hba, err := os.OpenFile(filepath.Join(data, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = hba.WriteString("host all all 0.0.0.0/0 trust\n")
		if cerr := hba.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	pg.Port, err = harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(pg.dir, "postgres.log"))
	if err != nil {
		t.Fatal(err)
	}
	pg.cmd = exec.Command(filepath.Join(pg.bin, "postgres"), "-D", data, "-p", strconv.Itoa(pg.Port),
		"-h", strings.Join(append([]string{"127.0.0.1"}, extra...), ","), "-k", sock, "-c", "fsync=off")
	pg.cmd.SysProcAttr = asPostgres
	pg.cmd.Dir = pg.dir
	pg.cmd.Stdout, pg.cmd.Stderr = logf, logf
	if err := pg.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { pg.done <- pg.cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		// SIGINT is PostgreSQL's "fast shutdown".
		_ = pg.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-pg.done:
		case <-time.After(30 * time.Second):
			_ = pg.cmd.Process.Kill()
			<-pg.done
		}
	})
	eventually(t, 30*time.Second, "postgres accepting connections", func() error {
		out, err := pg.psql("postgres", "select 1")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	return pg
}

func (pg *postgres) psql(db, query string) (string, error) {
	out, err := exec.Command(filepath.Join(pg.bin, "psql"), "-h", "127.0.0.1", "-p", strconv.Itoa(pg.Port),
		"-U", "postgres", "-d", db, "-tAc", query).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestPostgresDatastore: the same readiness test as on SQLite, with the
// state really stored in PostgreSQL.
func TestPostgresDatastore(t *testing.T) {
	pg := startPostgres(t)
	s := startServer(t, "--datastore-endpoint", fmt.Sprintf("postgres://postgres@127.0.0.1:%d/k1s?sslmode=disable", pg.Port))

	out, err := s.Kubectl("get", "--raw", "/readyz")
	if err != nil || strings.TrimSpace(out) != "ok" {
		t.Fatalf("readyz = %q %v", out, err)
	}
	out, err = s.Kubectl("get", "ns", "-o", "name")
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		mustContain(t, out, "namespace/"+ns, "namespaces")
	}
	if _, err := s.Kubectl("create", "configmap", "in-postgres", "--from-literal=k=v"); err != nil {
		t.Fatal(err)
	}
	n, err := pg.psql("k1s", "select count(*) from kine where name = '/registry/configmaps/default/in-postgres'")
	if err != nil || n == "0" || n == "" {
		t.Fatalf("configmap row in PostgreSQL: %q %v", n, err)
	}
	// Secrets are encrypted in PostgreSQL too.
	const plain = "k1s-plaintext-canary-pg"
	if out, err := s.Kubectl("create", "secret", "generic", "in-postgres", "--from-literal=v="+plain); err != nil {
		t.Fatal(out, err)
	}
	st := encryptionStatus(t, s)
	row, err := pg.psql("k1s", "select substring(value from 1 for 21) = 'k8s:enc:secretbox:v1:'::bytea, position('"+st.ActiveKey+":'::bytea in value), position('"+plain+"'::bytea in value) from kine where name = '/registry/secrets/default/in-postgres' order by id desc limit 1")
	if err != nil || row != "t|22|0" {
		t.Errorf("the Secret's row in PostgreSQL: %q %v, want t|22|0 (secretbox prefix, key %s right after it, no plaintext)", row, err, st.ActiveKey)
	}
	if st.Encryption != "on" || !st.AllActive {
		t.Errorf("secrets-encrypt status on PostgreSQL: %+v", st)
	}
	if _, err := os.Stat(filepath.Join(s.DataDir, "server", "db", "state.db")); err == nil {
		t.Fatal("a SQLite file was created although --datastore-endpoint names PostgreSQL")
	}
}
