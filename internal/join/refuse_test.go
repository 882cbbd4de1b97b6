package join

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// post sends body to the join endpoint with secret, trusting the server CA.
func (f *fixture) post(t *testing.T, secret string, body []byte) (int, http.Header, string) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(f.res.ServerCA.Cert)
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, err := http.NewRequest(http.MethodPost, f.url+JoinPath, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, message(data)
}

func (f *fixture) noSecrets(t *testing.T) {
	t.Helper()
	l, err := f.kube.CoreV1().Secrets("kube-system").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Items) != 0 {
		t.Errorf("a refused join left %d Secrets", len(l.Items))
	}
}

func reqJSON(name, ip string) []byte {
	b, _ := json.Marshal(Request{NodeName: name, NodeIP: ip, Password: strings.Repeat("p", 32)})
	return b
}

// Joins that could pose as the apiserver, or are malformed, are refused
// with a message naming the field, and leave no Secret.
func TestJoinRefusesBadRequests(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		name string
		body []byte
		want string
	}{
		{"apiserver DNS name", reqJSON("kubernetes.default.svc", "192.0.2.20"), `nodeName "kubernetes.default.svc" is a name of the apiserver`},
		{"localhost", reqJSON("localhost", "192.0.2.20"), `nodeName "localhost" is a name of the apiserver`},
		{"advertise address", reqJSON("edge-1", "192.0.2.10"), "nodeIP 192.0.2.10 is an address of the apiserver"},
		{"loopback", reqJSON("edge-1", "127.0.0.1"), "nodeIP 127.0.0.1 is an address of the apiserver"},
		{"first service IP", reqJSON("edge-1", "10.43.0.1"), "nodeIP 10.43.0.1 is an address of the apiserver"},
		{"IP in the service CIDR", reqJSON("edge-1", "10.43.7.7"), "nodeIP 10.43.7.7 is inside the service CIDR 10.43.0.0/16"},
		{"name with a slash", reqJSON("a/b", "192.0.2.20"), `invalid nodeName "a/b"`},
		{"name of 300 characters", reqJSON(strings.Repeat("a", 300), "192.0.2.20"), "invalid nodeName"},
		{"bad IP", reqJSON("edge-1", "192.0.2.300"), `invalid nodeIP "192.0.2.300"`},
		{"garbage JSON", []byte("{nodeName: edge-1"), "malformed join request"},
		{"10 MB body", append([]byte(`{"nodeName":"`), bytes.Repeat([]byte("a"), 10<<20)...), "malformed join request: http: request body too large"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, msg := f.post(t, f.tok.Secret, c.body)
			if code != http.StatusBadRequest || !strings.Contains(msg, c.want) {
				t.Errorf("got %d %q, want 400 with %q", code, msg, c.want)
			}
		})
	}
	f.noSecrets(t)
}

// Until the server opens joins (after claiming its own node name), the
// endpoint answers 503 and the client treats it as "wait".
func TestJoinClosedUntilOpen(t *testing.T) {
	f := newFixture(t)
	f.js.open.Store(false)
	_, err := f.join(t, f.tok, "edge-1", strings.Repeat("a", 32))
	if err == nil || IsPermanent(err) || WaitHint(err) != 2*time.Second || !strings.Contains(err.Error(), "server is starting") {
		t.Fatalf("join before open: err = %v (wait %v)", err, WaitHint(err))
	}
	f.noSecrets(t)
	f.js.Open()
	if _, err := f.join(t, f.tok, "edge-1", strings.Repeat("a", 32)); err != nil {
		t.Fatalf("join after open: %v", err)
	}
}

// After maxFailures wrong tokens a source gets 429 with Retry-After, even
// with the right token, until the window passes; the log has one line.
func TestJoinThrottlesWrongTokens(t *testing.T) {
	f := newFixture(t)
	var logBuf bytes.Buffer
	f.js.Log.(interface{ SetOutput(io.Writer) }).SetOutput(&logBuf)
	now := time.Now()
	f.js.limiter().now = func() time.Time { return now }
	for i := range 10 {
		code, hdr, msg := f.post(t, "wrong-secret-wrong-secret", reqJSON("edge-1", "192.0.2.20"))
		want := http.StatusUnauthorized
		if i >= maxFailures {
			want = http.StatusTooManyRequests
		}
		if code != want {
			t.Fatalf("attempt %d: %d %q, want %d", i+1, code, msg, want)
		}
		if code == http.StatusTooManyRequests && (hdr.Get("Retry-After") != "61" || !strings.Contains(msg, "too many failed joins from 127.0.0.1")) {
			t.Fatalf("attempt %d: Retry-After %q, message %q", i+1, hdr.Get("Retry-After"), msg)
		}
	}
	if code, _, msg := f.post(t, f.tok.Secret, reqJSON("edge-1", "192.0.2.20")); code != http.StatusTooManyRequests {
		t.Fatalf("right token while throttled: %d %q, want 429", code, msg)
	}
	_, err := f.join(t, f.tok, "edge-1", strings.Repeat("a", 32))
	if err == nil || IsPermanent(err) || WaitHint(err) != 61*time.Second {
		t.Fatalf("client on 429: err = %v, wait %v; want a retry after 61s", err, WaitHint(err))
	}
	if n := strings.Count(logBuf.String(), "refused a join"); n != 1 {
		t.Errorf("%d log lines for 10 refusals, want 1:\n%s", n, logBuf.String())
	}
	f.noSecrets(t)
	now = now.Add(failureWindow)
	if _, err := f.join(t, f.tok, "edge-1", strings.Repeat("a", 32)); err != nil {
		t.Fatalf("join after the window: %v", err)
	}
}

// The tracker's memory is bounded however many sources fail.
func TestLimiterBounded(t *testing.T) {
	l := newLimiter()
	log := discardLog()
	for i := range maxSources + 100 {
		l.refuse(log, string(rune(i)), true, "x")
	}
	if len(l.sources) > maxSources {
		t.Fatalf("%d sources tracked, want at most %d", len(l.sources), maxSources)
	}
}

func discardLog() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}
