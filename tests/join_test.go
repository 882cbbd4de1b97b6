package tests

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
)

// joinPost posts a join request to the server at host:port with secret
// and returns the status, the Retry-After header and the body.
func joinPost(host string, port int, secret, nodeName, nodeIP, password string) (int, string, string, error) {
	body, err := json.Marshal(map[string]string{"nodeName": nodeName, "nodeIP": nodeIP, "password": password})
	if err != nil {
		return 0, "", "", err
	}
	return joinPostBody(host, port, secret, body)
}

// joinPostBody posts body as it is, for requests no agent would send.
func joinPostBody(host string, port int, secret string, body []byte) (int, string, string, error) {
	req, err := http.NewRequest(http.MethodPost, "https://"+net.JoinHostPort(host, strconv.Itoa(port))+"/v1-k1s/join", bytes.NewReader(body))
	if err != nil {
		return 0, "", "", err
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	// The test is not checking the server's identity here.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(data), nil
}

// outboundIP is this host's address towards the network: a source
// address other than 127.0.0.1 for requests to the server.
func outboundIP(t *testing.T) string {
	t.Helper()
	c, err := net.Dial("udp", "192.0.2.1:9")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String()
}

// TestJoinHardening: with a pre-shared token, a client hammering the join
// endpoint with the server's node name from the moment the port opens
// never gets it (503 while starting, then 409) and the server comes up;
// joins under the apiserver's names or addresses are refused naming the
// field; a loop of wrong tokens from one address is throttled (429) and
// logged in at most a couple of lines, while another address still joins;
// refused joins leave no node-password Secret.
func TestJoinHardening(t *testing.T) {
	const secret = "e2e-pre-shared-secret-0123456789"
	const nodeName = "k1s-e2e-server"
	myIP := outboundIP(t)
	s := newNodeServer(t, "--token", secret, "--node-name", nodeName)

	var mu sync.Mutex
	codes := map[int]int{}
	var won string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		deadline := time.Now().Add(4 * time.Minute)
		for time.Now().Before(deadline) {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			code, _, body, err := joinPost(myIP, s.Port, secret, nodeName, "192.0.2.99", strings.Repeat("h", 32))
			if err != nil {
				continue // not listening yet
			}
			mu.Lock()
			codes[code]++
			if code == http.StatusOK {
				won = body[:min(len(body), 80)]
			}
			mu.Unlock()
		}
	}()
	stopHammer := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopHammer)
	startExisting(t, s)
	err := s.WaitLog("k1s is ready", 3*time.Minute)
	time.Sleep(2 * time.Second) // the hammer keeps going after "ready"
	stopHammer()
	mu.Lock()
	t.Logf("join attempts with the server's node name, by status: %v", codes)
	if won != "" {
		t.Errorf("a client took the server's node name: %s…", won)
	}
	for code := range codes {
		if code != http.StatusServiceUnavailable && code != http.StatusConflict {
			t.Errorf("status %d for a join under the server's node name, want only 503 or 409", code)
		}
	}
	if codes[http.StatusConflict] == 0 {
		t.Errorf("no join attempt got 409 after the server opened joins")
	}
	mu.Unlock()
	if err != nil {
		t.Fatalf("server did not get ready while a client hammered its node name: %v", err)
	}
	if done, err := s.Exited(); done {
		t.Fatalf("server exited: %v", err)
	}

	hostname, _ := os.Hostname()
	t.Run("names and addresses of the apiserver", func(t *testing.T) {
		for _, c := range []struct{ name, ip, want string }{
			{"kubernetes.default.svc", "192.0.2.50", `nodeName \"kubernetes.default.svc\" is a name of the apiserver`},
			{strings.ToLower(hostname), "192.0.2.50", "is a name of the apiserver"},
			{"e2e-a", "10.43.0.1", "nodeIP 10.43.0.1 is an address of the apiserver"},
			{"e2e-b", myIP, "nodeIP " + myIP + " is an address of the apiserver"},
			{"e2e-c", "10.43.200.7", "nodeIP 10.43.200.7 is inside the service CIDR"},
		} {
			code, _, body, err := joinPost(myIP, s.Port, secret, c.name, c.ip, strings.Repeat("p", 32))
			if err != nil || code != http.StatusBadRequest || !strings.Contains(body, c.want) {
				t.Errorf("join as %s/%s: %d %s %v, want 400 with %q", c.name, c.ip, code, body, err, c.want)
			}
		}
	})

	t.Run("malformed requests", func(t *testing.T) {
		pw := strings.Repeat("m", 32)
		join := func(name string) []byte {
			b, err := json.Marshal(map[string]string{"nodeName": name, "nodeIP": "192.0.2.60", "password": pw})
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		for _, c := range []struct {
			what string
			body []byte
			want string
		}{
			{"a name with a slash", join("e2e/evil"), "nodeName"},
			{"a name of 300 characters", join(strings.Repeat("n", 300)), "nodeName"},
			{"a 10 MB body", append(append([]byte(`{"nodeName":"e2e-big","password":"`), bytes.Repeat([]byte("x"), 10<<20)...), `"}`...), "too large"},
			{"garbage JSON", []byte("{nodeName: e2e-garbage"), "malformed join request"},
		} {
			code, _, body, err := joinPostBody(myIP, s.Port, secret, c.body)
			if err != nil || code != http.StatusBadRequest || !strings.Contains(body, c.want) {
				t.Errorf("%s: %d %.300s %v, want 400 naming %q", c.what, code, body, err, c.want)
			}
		}
	})

	t.Run("wrong tokens are throttled", func(t *testing.T) {
		var got []string
		for range 10 {
			code, retry, body, err := joinPost("127.0.0.1", s.Port, "wrong-secret-wrong-secret", "e2e-guess", "192.0.2.51", strings.Repeat("g", 32))
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, strconv.Itoa(code))
			if code == http.StatusTooManyRequests {
				if n, err := strconv.Atoi(retry); err != nil || n < 1 || n > 61 {
					t.Errorf("429 with Retry-After %q (%s)", retry, body)
				}
			}
		}
		want := "401 401 401 401 401 429 429 429 429 429"
		if strings.Join(got, " ") != want {
			t.Errorf("statuses of 10 wrong-token joins from 127.0.0.1: %s, want %s", strings.Join(got, " "), want)
		}
		code, _, body, err := joinPost(myIP, s.Port, secret, "e2e-other", "192.0.2.77", strings.Repeat("o", 32))
		if err != nil || code != http.StatusOK {
			t.Errorf("right token from %s while 127.0.0.1 is throttled: %d %.200s %v", myIP, code, body, err)
		}
		if n := strings.Count(s.Log(), "refused a join from 127.0.0.1"); n > 2 {
			t.Errorf("%d log lines for 10 refused joins from one address, want at most 2", n)
		}
	})

	out, err := s.Kubectl("-n", "kube-system", "get", "secrets", "-l", "k1s.io/node-password", "-o", "jsonpath={.items[*].metadata.name}")
	if err != nil {
		t.Fatal(err)
	}
	names := strings.Fields(out)
	sort.Strings(names)
	if want := "e2e-other.node-password.k1s " + nodeName + ".node-password.k1s"; strings.Join(names, " ") != want {
		t.Errorf("node-password Secrets %v, want only %s (refused joins must leave none)", names, want)
	}
}

// TestKubeletServingCA: an agent's kubelet serving certificate is signed
// by the kubelet-serving CA, not by the server CA that clients and Pods
// trust for the apiserver. A bare secret joins only with
// --insecure-skip-ca-check, with a warning.
func TestKubeletServingCA(t *testing.T) {
	lab := harness.NewLab(t)
	h := lab.AddHost(t, "agent1")
	s := startNode(t, "--tls-san", lab.GatewayIP)
	a := startAgent(t, s, lab, h)

	tlsDir := filepath.Join(s.DataDir, "server", "tls")
	for _, node := range []struct{ name, dir string }{{"agent", a.DataDir}, {"server", s.DataDir}} {
		cert := findFile(t, node.dir, "serving-kubelet.crt")
		if out, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(tlsDir, "server-ca.crt"), cert).CombinedOutput(); err == nil {
			t.Errorf("the %s's kubelet serving certificate verifies against the server CA:\n%s", node.name, out)
		}
		if out, err := exec.Command("openssl", "verify", "-CAfile", filepath.Join(tlsDir, "kubelet-serving-ca.crt"), cert).CombinedOutput(); err != nil {
			t.Errorf("the %s's kubelet serving certificate does not verify against the kubelet-serving CA: %v\n%s", node.name, err, out)
		}
	}

	t.Run("certificate check", func(t *testing.T) {
		certificateCheckMatchesFiles(t, s.DataDir, 5)
		certificateCheckMatchesFiles(t, a.DataDir, 4)
		certificateCheckFailsNearExpiry(t)
	})

	// A short name: the agent's run dir is below the subtest's temp dir.
	t.Run("bare", func(t *testing.T) {
		token, err := os.ReadFile(filepath.Join(s.DataDir, "server", "token"))
		if err != nil {
			t.Fatal(err)
		}
		tok := strings.TrimSpace(string(token))
		h2 := lab.AddHost(t, "agent2")
		b := startAgentToken(t, s, lab, h2, tok[strings.LastIndex(tok, ":")+1:], func(string) error { return nil }, "--insecure-skip-ca-check")
		mustContain(t, b.Log(), "carries no CA hash", "agent log")
	})
}

// findFile finds name below dir.
func findFile(t *testing.T, dir, name string) string {
	t.Helper()
	var found string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == name && found == "" {
			found = p
		}
		return nil
	})
	if found == "" {
		t.Fatalf("no %s below %s", name, dir)
	}
	return found
}

// certificateCheckMatchesFiles runs `k1s certificate check -o json` on a
// data dir and compares every entry with openssl's reading of the file;
// the list must hold every .crt of the server's tls dir and the node's pki
// dir, at least min of them.
func certificateCheckMatchesFiles(t *testing.T, dataDir string, atLeast int) {
	t.Helper()
	code, out, err := harness.Run(30*time.Second, "certificate", "check", "-o", "json", "--data-dir", dataDir)
	if err != nil || code != 0 {
		t.Fatalf("certificate check of %s: exit %d %v\n%s", dataDir, code, err, out)
	}
	var certs []struct {
		Path     string    `json:"path"`
		Subject  string    `json:"subject"`
		NotAfter time.Time `json:"notAfter"`
		DaysLeft int       `json:"daysLeft"`
	}
	if err := json.Unmarshal([]byte(out), &certs); err != nil {
		t.Fatalf("certificate check -o json: %v\n%s", err, out)
	}
	files, _ := filepath.Glob(filepath.Join(dataDir, "server", "tls", "*.crt"))
	agent, _ := filepath.Glob(filepath.Join(dataDir, "agent", "pki", "*.crt"))
	files = append(files, agent...)
	if len(certs) != len(files) || len(certs) < atLeast {
		t.Fatalf("certificate check lists %d certificates, the data dir holds %d .crt files (want at least %d)", len(certs), len(files), atLeast)
	}
	for _, c := range certs {
		o, err := exec.Command("openssl", "x509", "-in", c.Path, "-noout", "-enddate", "-subject", "-nameopt", "RFC2253").CombinedOutput()
		if err != nil {
			t.Fatalf("openssl x509 %s: %v %s", c.Path, err, o)
		}
		var end time.Time
		var subject string
		for _, l := range strings.Split(strings.TrimSpace(string(o)), "\n") {
			if v, ok := strings.CutPrefix(l, "notAfter="); ok {
				end, err = time.Parse("Jan _2 15:04:05 2006 MST", v)
				if err != nil {
					t.Fatal(err)
				}
			}
			if v, ok := strings.CutPrefix(l, "subject="); ok {
				subject = v
			}
		}
		if !end.Equal(c.NotAfter) || subject != c.Subject {
			t.Errorf("%s: check says %s / %q, openssl says %s / %q", c.Path, c.NotAfter, c.Subject, end, subject)
		}
		if want := int(time.Until(end).Hours() / 24); c.DaysLeft < want-1 || c.DaysLeft > want {
			t.Errorf("%s: %d days left, want %d", c.Path, c.DaysLeft, want)
		}
	}
}

// certificateCheckFailsNearExpiry: a certificate with 10 days left makes
// `k1s certificate check` exit 1, naming it.
func certificateCheckFailsNearExpiry(t *testing.T) {
	short := t.TempDir()
	tls := filepath.Join(short, "server", "tls")
	if err := os.MkdirAll(tls, 0o700); err != nil {
		t.Fatal(err)
	}
	if o, err := exec.Command("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", filepath.Join(tls, "short.key"), "-out", filepath.Join(tls, "short.crt"), "-days", "10", "-subj", "/CN=short").CombinedOutput(); err != nil {
		t.Fatalf("openssl req: %v %s", err, o)
	}
	code, out, err := harness.Run(30*time.Second, "certificate", "check", "--data-dir", short)
	if err != nil || code != 1 {
		t.Fatalf("certificate check with a certificate 10 days from expiry: exit %d %v, want 1\n%s", code, err, out)
	}
	mustContain(t, out, "expire within 30 days: short.crt", "certificate check output")
}
