package tests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
)

// withoutArg returns args without flag (a bare boolean flag).
func withoutArg(args []string, flag string) []string {
	return slices.DeleteFunc(slices.Clone(args), func(a string) bool { return a == flag })
}

// waitExit waits for s to end on its own and returns its log.
func waitExit(t *testing.T, s *harness.Server, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if done, err := s.Exited(); done {
			if err == nil {
				t.Errorf("the server exited 0")
			}
			return s.Log()
		}
		if time.Now().After(deadline) {
			t.Fatalf("still running after %s:\n%s", timeout, s.Tail(20))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestEmbeddedEtcdClusterInit: `k1s server --cluster-init` serves the API
// from an embedded etcd member (client TLS on loopback, its own CAs, 0600
// files); after a SIGKILL it restarts on the same data without the flag
// and still holds what was written. A data dir holding SQLite data is
// refused with --cluster-init, and left as it was.
func TestEmbeddedEtcdClusterInit(t *testing.T) {
	lab := harness.NewLab(t)
	h, hs := lab.AddHost(t, "e1"), lab.AddHost(t, "sq")

	s, err := harness.NewServer(t.TempDir(), "--cluster-init", haDisable)
	if err != nil {
		t.Fatal(err)
	}
	s.PlaceIn(h)
	keepLogsOnFailure(t, s)
	began := time.Now()
	startExisting(t, s)
	t.Logf("BENCH --cluster-init server ready in %s (control plane only)", time.Since(began).Round(100*time.Millisecond))
	for _, want := range []string{"embedded etcd member", "ready in", "stored the cluster's CAs and keys in the datastore", "run on the server holding Lease kube-system/k1s-controllers"} {
		// /readyz answers before the later steps log.
		if err := s.WaitLog(want, 30*time.Second); err != nil {
			t.Error(err)
		}
	}
	server := filepath.Join(s.DataDir, "server")
	if _, err := os.Stat(filepath.Join(server, "db", "etcd", "member")); err != nil {
		t.Errorf("no etcd member data: %v", err)
	}
	if _, err := os.Stat(filepath.Join(server, "db", "state.db")); err == nil {
		t.Error("a SQLite database was made as well")
	}
	tlsFiles, _ := filepath.Glob(filepath.Join(server, "tls", "etcd", "*"))
	if len(tlsFiles) != 10 {
		t.Errorf("tls/etcd holds %d files, want 10 (2 CAs, serving, client, peer; cert and key each): %v", len(tlsFiles), tlsFiles)
	}
	for _, f := range tlsFiles {
		if st, err := os.Stat(f); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v %v, want 0600", f, st.Mode().Perm(), err)
		}
	}
	kc := s.Kubeconfig
	if out, err := kubectlVia(kc, s, "create", "configmap", "on-etcd", "--from-literal=k=v"); err != nil {
		t.Fatal(out, err)
	}
	// Clients on loopback only; peers on the advertise address.
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(h.IP, "2379"), 2*time.Second); err == nil {
		c.Close()
		t.Errorf("the etcd client port answers on %s", h.IP)
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(h.IP, "2380"), 2*time.Second); err != nil {
		t.Errorf("the etcd peer port does not answer on %s: %v", h.IP, err)
	} else {
		c.Close()
	}

	if err := syscall.Kill(s.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "server gone", func() error {
		if done, _ := s.Exited(); !done {
			return os.ErrDeadlineExceeded
		}
		return nil
	})
	s.Args = withoutArg(s.Args, "--cluster-init")
	restarted := time.Now()
	startExisting(t, s)
	t.Logf("BENCH restart on etcd data (no --cluster-init) ready in %s", time.Since(restarted).Round(100*time.Millisecond))
	if !strings.Contains(s.Log(), "embedded etcd member") {
		t.Errorf("the restart without --cluster-init did not use the embedded etcd:\n%s", s.Tail(20))
	}
	if out, err := kubectlVia(kc, s, "get", "configmap", "on-etcd", "-o", "jsonpath={.data.k}"); err != nil || out != "v" {
		t.Errorf("after SIGKILL and restart: configmap %q %v, want v", out, err)
	}

	t.Run("SQLite data dir refused", func(t *testing.T) {
		q, err := harness.NewServer(t.TempDir(), haDisable)
		if err != nil {
			t.Fatal(err)
		}
		q.PlaceIn(hs)
		startExisting(t, q)
		if err := q.Stop(60 * time.Second); err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, q.DataDir)
		q.Args = append(q.Args, "--cluster-init")
		if err := q.Start(); err != nil {
			t.Fatal(err)
		}
		log := waitExit(t, q, 30*time.Second)
		for _, want := range []string{"cannot convert SQLite to etcd", "without --cluster-init", "state.db"} {
			if !strings.Contains(log, want) {
				t.Errorf("the refusal does not say %q:\n%s", want, q.Tail(20))
			}
		}
		if _, err := os.Stat(filepath.Join(q.DataDir, "server", "db", "etcd")); err == nil {
			t.Error("the refused server made an etcd dir")
		}
		after := snapshot(t, q.DataDir)
		for p, v := range before {
			if !strings.HasPrefix(p, "server") {
				continue
			}
			if after[p] != v {
				t.Errorf("%s changed in the refused start", p)
			}
		}
	})
}

// newLabServer prepares a control-plane server in lab host h on the
// apiserver port port (0: a free one), on SQLite unless extra names
// another datastore (--cluster-init, --server, --datastore-endpoint).
func newLabServer(t testing.TB, h *harness.NetHost, port int, extra ...string) *harness.Server {
	t.Helper()
	s, err := harness.NewServer(t.TempDir(), append([]string{haDisable}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	if port != 0 {
		// Every apiserver of the kubernetes Service must listen on the same
		// port: the endpoints have one.
		i := slices.Index(s.Args, "--https-listen-port")
		s.Args[i+1] = strconv.Itoa(port)
		s.Port = port
	}
	s.PlaceIn(h)
	return s
}

// etcdMembers lists the embedded etcd's members as server s's member
// sees them (etcd's JSON gateway, with s's client certificate, from
// inside s's network namespace): started voting members, and all.
func etcdMembers(h *harness.NetHost, s *harness.Server) (voters []string, all int, err error) {
	dir := filepath.Join(s.DataDir, "server", "tls", "etcd")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := h.Run(ctx, "curl", "-sS", "--fail", "--cacert", filepath.Join(dir, "server-ca.crt"),
		"--cert", filepath.Join(dir, "client.crt"), "--key", filepath.Join(dir, "client.key"),
		"-X", "POST", "-d", "{}", "https://127.0.0.1:2379/v3/cluster/member/list")
	if err != nil {
		return nil, 0, err
	}
	var list struct {
		Members []struct {
			Name      string `json:"name"`
			IsLearner bool   `json:"isLearner"`
		} `json:"members"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return nil, 0, fmt.Errorf("%v: %s", err, out)
	}
	for _, m := range list.Members {
		if m.Name != "" && !m.IsLearner {
			voters = append(voters, m.Name)
		}
	}
	return voters, len(list.Members), nil
}

// TestHAEmbeddedEtcd: a --cluster-init server and two that join it with
// --server and the token become one etcd cluster of three voting members
// (each joins as a learner and is promoted); SIGKILL the first → writes
// through the second succeed; the first restarts on its data and serves
// them.
func TestHAEmbeddedEtcd(t *testing.T) {
	lab := harness.NewLab(t)
	h1, h2, h3 := lab.AddHost(t, "e1"), lab.AddHost(t, "e2"), lab.AddHost(t, "e3")
	a := newLabServer(t, h1, 0, "--cluster-init")
	keepLogsOnFailure(t, a)
	startExisting(t, a)
	tokenB, err := os.ReadFile(filepath.Join(a.DataDir, "server", "token"))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tokenB))
	kc := a.Kubeconfig
	joined := []*harness.Server{a}
	for i, h := range []*harness.NetHost{h2, h3} {
		s := newLabServer(t, h, a.Port, "--server", "https://"+a.Addr(), "--token", token)
		keepLogsOnFailure(t, s)
		began := time.Now()
		startExisting(t, s)
		t.Logf("BENCH server %d joined and ready in %s (embedded etcd, control plane only)", i+2, time.Since(began).Round(100*time.Millisecond))
		if err := s.WaitLog("joined the cluster at", time.Second); err != nil {
			t.Error(err)
		}
		joined = append(joined, s)
	}
	b := joined[1]
	for _, f := range []string{"server-ca.crt", "client-ca.crt", "etcd/server-ca.crt", "etcd/peer-ca.crt"} {
		fa, _ := os.ReadFile(filepath.Join(a.DataDir, "server", "tls", f))
		for _, s := range joined[1:] {
			fs, err := os.ReadFile(filepath.Join(s.DataDir, "server", "tls", f))
			if err != nil || len(fa) == 0 || string(fa) != string(fs) {
				t.Errorf("%s differs between the servers (err %v)", f, err)
			}
		}
	}
	eventually(t, time.Minute, "three started voting etcd members", func() error {
		voters, all, err := etcdMembers(h2, b)
		if err != nil || len(voters) != 3 || all != 3 {
			return fmt.Errorf("voters %v of %d members, %v", voters, all, err)
		}
		return nil
	})
	for _, s := range joined {
		if out, err := kubectlVia(kc, s, "get", "--raw", "/readyz"); err != nil || strings.TrimSpace(out) != "ok" {
			t.Fatalf("A's admin kubeconfig against %s: /readyz %q %v", s.Host, out, err)
		}
		if out, err := harness.Kubectl(s.Kubeconfig, "--server", "https://"+s.Addr(), "get", "ns", "default", "-o", "name"); err != nil {
			t.Errorf("%s's own admin kubeconfig: %q %v", s.Host, out, err)
		}
	}

	if err := syscall.Kill(a.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	eventually(t, 30*time.Second, "a write through server 2 after server 1 died", func() error {
		_, err := kubectlVia(kc, b, "create", "configmap", "after-kill", "--from-literal=k=v")
		if err != nil && strings.Contains(err.Error(), "AlreadyExists") {
			return nil
		}
		return err
	})
	t.Logf("BENCH write through server 2 succeeded %s after server 1's SIGKILL", time.Since(killed).Round(100*time.Millisecond))
	eventually(t, 30*time.Second, "server 1 gone", func() error {
		if done, _ := a.Exited(); !done {
			return errors.New("still running")
		}
		return nil
	})
	a.Args = withoutArg(a.Args, "--cluster-init")
	restarted := time.Now()
	startExisting(t, a)
	t.Logf("BENCH server 1 restarted and ready in %s", time.Since(restarted).Round(100*time.Millisecond))
	if out, err := kubectlVia(kc, a, "get", "configmap", "after-kill", "-o", "jsonpath={.data.k}"); err != nil || out != "v" {
		t.Errorf("the restarted server 1 does not serve the write made while it was down: %q %v", out, err)
	}
	if voters, all, err := etcdMembers(h1, a); err != nil || len(voters) != 3 || all != 3 {
		t.Errorf("after the restart: voters %v of %d members, %v", voters, all, err)
	}

	// Quorum lost: two of three die; the survivor refuses writes.
	c := joined[2]
	for _, s := range []*harness.Server{a, b} {
		if err := syscall.Kill(s.PID(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	lost := time.Now()
	out, err := kubectlVia(kc, c, "create", "configmap", "no-quorum", "--from-literal=k=v")
	if err == nil {
		t.Errorf("a write without quorum succeeded: %s", out)
	} else {
		t.Logf("without quorum the write fails after %s: %v", time.Since(lost).Round(100*time.Millisecond), err)
	}
	// The survivor, restarted with --cluster-reset, serves alone with all data.
	if err := syscall.Kill(c.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "servers gone", func() error {
		for _, s := range joined {
			if done, _ := s.Exited(); !done {
				return errors.New(s.Host + " still running")
			}
		}
		return nil
	})
	c.Args = append(c.Args, "--cluster-reset")
	reset := time.Now()
	startExisting(t, c)
	t.Logf("BENCH survivor with --cluster-reset ready in %s", time.Since(reset).Round(100*time.Millisecond))
	if out, err := kubectlVia(kc, c, "get", "configmap", "after-kill", "-o", "jsonpath={.data.k}"); err != nil || out != "v" {
		t.Errorf("after --cluster-reset: configmap %q %v, want v", out, err)
	}
	if out, err := kubectlVia(kc, c, "create", "configmap", "after-reset", "--from-literal=k=v"); err != nil {
		t.Errorf("a write after --cluster-reset: %s %v", out, err)
	}
	if voters, all, err := etcdMembers(h3, c); err != nil || len(voters) != 1 || all != 1 {
		t.Errorf("after --cluster-reset: voters %v of %d members, %v; want this one only", voters, all, err)
	}
}

// newLabNodeServer is newLabServer with the server's own node (named
// after h), CoreDNS off: a Node to delete, nothing to schedule.
func newLabNodeServer(t testing.TB, h *harness.NetHost, port int, extra ...string) *harness.Server {
	t.Helper()
	s := newNodeServer(t, append([]string{haDisable, "--disable=coredns", "--node-name", h.Name}, extra...)...)
	if port != 0 {
		i := slices.Index(s.Args, "--https-listen-port")
		s.Args[i+1] = strconv.Itoa(port)
		s.Port = port
	}
	s.PlaceIn(h)
	return s
}

// runRemoveMember runs `k1s server --remove-member` with s's flags until
// it exits; it returns the exit's error (nil: 0) and the log.
func runRemoveMember(t *testing.T, s *harness.Server) (error, string) {
	t.Helper()
	args := s.Args
	s.Args = append(slices.Clone(args), "--remove-member")
	defer func() { s.Args = args }()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(30 * time.Second) })
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if done, err := s.Exited(); done {
			return err, s.Log()
		}
		if time.Now().After(deadline) {
			t.Fatalf("--remove-member still running after 2m:\n%s", s.Tail(20))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestHAEtcdMemberRemoval: three servers on embedded etcd, the third with
// its node. `kubectl delete node` of the third removes its etcd member
// (2 left), its k1s exits saying so, the Node goes, writes still
// succeed; --remove-member there then only moves its data aside. The
// second server, stopped, leaves with --remove-member (1 member left),
// and server 1 still writes; --remove-member on server 1, the last
// member, is refused and changes nothing; server 2 then joins again with
// --server on its data dir.
func TestHAEtcdMemberRemoval(t *testing.T) {
	lab := harness.NewLab(t)
	h1, h2, h3 := lab.AddHost(t, "m1"), lab.AddHost(t, "m2"), lab.AddHost(t, "m3")
	a := newLabServer(t, h1, 0, "--cluster-init")
	keepLogsOnFailure(t, a)
	startExisting(t, a)
	tokenB, err := os.ReadFile(filepath.Join(a.DataDir, "server", "token"))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tokenB))
	kc := a.Kubeconfig
	join := []string{"--server", "https://" + a.Addr(), "--token", token}
	b := newLabServer(t, h2, a.Port, join...)
	keepLogsOnFailure(t, b)
	startExisting(t, b)
	c := newLabNodeServer(t, h3, a.Port, join...)
	keepLogsOnFailure(t, c)
	startExisting(t, c)
	eventually(t, time.Minute, "three started voting etcd members", func() error {
		voters, all, err := etcdMembers(h1, a)
		if err != nil || len(voters) != 3 || all != 3 {
			return fmt.Errorf("voters %v of %d members, %v", voters, all, err)
		}
		return nil
	})
	var cMember string
	eventually(t, 2*time.Minute, "node m3 marked with its etcd member", func() error {
		out, err := kubectlVia(kc, a, "get", "node", "m3", "-o",
			`jsonpath={.metadata.annotations.etcd\.k1s\.io/member-name} {.metadata.annotations.etcd\.k1s\.io/peer-url} {.metadata.finalizers}`)
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		f := strings.Fields(out)
		if len(f) < 3 || f[1] != "https://"+h3.IP+":2380" || !strings.Contains(f[2], "etcd.k1s.io/member") {
			return fmt.Errorf("node m3: %q", out)
		}
		cMember = f[0]
		return nil
	})

	deleted := time.Now()
	if out, err := kubectlVia(kc, a, "delete", "node", "m3", "--wait=false"); err != nil {
		t.Fatal(out, err)
	}
	eventually(t, time.Minute, "two etcd members after kubectl delete node m3", func() error {
		voters, all, err := etcdMembers(h1, a)
		if err != nil || all != 2 || len(voters) != 2 || slices.Contains(voters, cMember) {
			return fmt.Errorf("voters %v of %d members, %v", voters, all, err)
		}
		return nil
	})
	t.Logf("BENCH member of the deleted node removed %s after kubectl delete node", time.Since(deleted).Round(100*time.Millisecond))
	log := waitExit(t, c, time.Minute)
	t.Logf("BENCH server 3's k1s exited %s after kubectl delete node: %s", time.Since(deleted).Round(100*time.Millisecond), lineWith(log, "was removed from the cluster"))
	for _, want := range []string{"datastore: embedded etcd member " + cMember, "was removed from the cluster", "k1s server --remove-member", "--server https://"} {
		if !strings.Contains(log, want) {
			t.Errorf("server 3's exit does not say %q:\n%s", want, c.Tail(20))
		}
	}
	eventually(t, time.Minute, "node m3 gone", func() error {
		out, err := kubectlVia(kc, a, "get", "node", "m3", "-o", "name")
		if err == nil || !strings.Contains(err.Error()+out, "NotFound") {
			return fmt.Errorf("node m3: %q %v", out, err)
		}
		return nil
	})
	if err := a.WaitLog("removed its etcd member "+cMember, time.Second); err != nil && b.WaitLog("removed its etcd member "+cMember, time.Second) != nil {
		t.Errorf("neither remaining server logged the removal: %v", err)
	}
	if out, err := kubectlVia(kc, b, "create", "configmap", "after-delete-node", "--from-literal=k=v"); err != nil {
		t.Errorf("a write after the member's removal: %s %v", out, err)
	}
	// Server 3's member is gone: --remove-member only moves its data aside.
	if err, out := runRemoveMember(t, c); err != nil || !strings.Contains(out, "was removed from the cluster already") {
		t.Errorf("--remove-member on the removed server: %v\n%s", err, c.Tail(20))
	}
	if hasEtcdData(c) {
		t.Error("server 3's etcd data is still in place")
	}

	// Server 2, stopped, leaves with --remove-member.
	if err := b.Stop(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	left := time.Now()
	err, out := runRemoveMember(t, b)
	if err != nil {
		t.Fatalf("--remove-member on server 2: %v\n%s", err, b.Tail(30))
	}
	t.Logf("BENCH --remove-member of a stopped server took %s: %s", time.Since(left).Round(100*time.Millisecond), lineWith(out, "--remove-member: done"))
	for _, want := range []string{"--remove-member: removed etcd member", "1 members left", "moved this server's etcd data", "etcd.removed-", "--server https://"} {
		if !strings.Contains(out, want) {
			t.Errorf("--remove-member's output does not say %q:\n%s", want, b.Tail(20))
		}
	}
	if hasEtcdData(b) {
		t.Error("server 2's etcd data is still in place")
	}
	if aside, _ := filepath.Glob(filepath.Join(b.DataDir, "server", "db", "etcd.removed-*", "member")); len(aside) != 1 {
		t.Errorf("server 2's etcd data was not moved aside: %v", aside)
	}
	if voters, all, err := etcdMembers(h1, a); err != nil || len(voters) != 1 || all != 1 {
		t.Errorf("after --remove-member: voters %v of %d members, %v; want server 1's only", voters, all, err)
	}
	eventually(t, 30*time.Second, "a write through server 1 alone", func() error {
		out, err := kubectlVia(kc, a, "create", "configmap", "after-remove-member", "--from-literal=k=v")
		if err != nil && strings.Contains(out+err.Error(), "AlreadyExists") {
			return nil
		}
		return err
	})

	// The last member stays.
	if err := a.Stop(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	err, out = runRemoveMember(t, a)
	if err == nil || !strings.Contains(out, "last voting member") || !strings.Contains(out, "Nothing was changed") {
		t.Errorf("--remove-member on the last member: %v\n%s", err, a.Tail(20))
	}
	if !hasEtcdData(a) {
		t.Error("the refused --remove-member moved server 1's data")
	}

	// Server 2 joins again as its --remove-member said: --server and the
	// token, same data dir.
	startExisting(t, a)
	rejoin := time.Now()
	startExisting(t, b)
	t.Logf("BENCH server 2 rejoined and ready %s after its start", time.Since(rejoin).Round(100*time.Millisecond))
	eventually(t, time.Minute, "two voting members after server 2 rejoined", func() error {
		voters, all, err := etcdMembers(h2, b)
		if err != nil || len(voters) != 2 || all != 2 {
			return fmt.Errorf("voters %v of %d members, %v", voters, all, err)
		}
		return nil
	})
	if out, err := kubectlVia(kc, b, "get", "configmap", "after-remove-member", "-o", "jsonpath={.data.k}"); err != nil || out != "v" {
		t.Errorf("the rejoined server 2 does not serve a write made while it was out: %q %v", out, err)
	}
}

// lineWith is the first line of log that contains s.
func lineWith(log, s string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return "(no line with " + s + ")"
}

// hasEtcdData reports whether s's data dir holds an etcd member's data.
func hasEtcdData(s *harness.Server) bool {
	_, err := os.Stat(filepath.Join(s.DataDir, "server", "db", "etcd", "member"))
	return err == nil
}
