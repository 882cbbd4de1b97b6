package ingress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
)

// echo is a backend answering with its name and what it received.
func echo(name string) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		fmt.Fprintf(w, "backend=%s host=%s path=%s xff=%s proto=%s xfhost=%s\n", name, r.Host, r.URL.Path,
			r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"))
	}))
}

type tLogWriter struct{ t *testing.T }

func (w tLogWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestControllerEndToEnd runs the controller against a fake API server and
// real HTTP(S) servers: routing by host and path to two backends, 404 and
// default backend, 503 for a missing Service, TLS certificate by SNI,
// Ingress status from the published Service, health endpoints, rebuild on
// watch events and graceful shutdown.
func TestControllerEndToEnd(t *testing.T) {
	backA, backB := echo("a"), echo("b")
	defer backA.Close()
	defer backB.Close()

	certPEM, keyPEM := testCert(t, "secure-example-cn", "secure.example")
	svcB := service("default", "svc-b", "10.43.0.2")
	svcB.Spec.Ports = []corev1.ServicePort{{Name: "web", Port: 8080}}
	publish := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "k1s-ingress"},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ClusterIP: "10.43.0.50", Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
		Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{
			{IP: "192.0.2.20"}, {IP: "192.0.2.10"},
		}}},
	}
	web := ing("default", "web", 0,
		rule("a.example", p{"/", prefix, "svc-a", 80}),
		rule("b.example", p{"/api", prefix, "svc-b", "web"}, p{"/", prefix, "svc-a", "http"}),
		rule("broken.example", p{"/", prefix, "no-such-svc", 80}),
	)
	secure := withTLS(ing("default", "secure", 1, rule("secure.example", p{"/", prefix, "svc-b", 8080})), "secure-tls", "secure.example")
	foreign := ing("default", "foreign", 2, rule("c.example", p{"/", prefix, "svc-a", 80}))
	foreign.Spec.IngressClassName = ptr("other")
	objs := []runtime.Object{
		class("k1s", ControllerName, true), class("other", "example.com/other", false),
		service("default", "svc-a", "10.43.0.1"), svcB, publish,
		&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "secure-tls"},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM},
		},
		web, secure, foreign,
	}
	client := fake.NewClientset(objs...)

	resolve := func(svc *corev1.Service, port int32) (string, error) {
		switch {
		case svc.Name == "svc-a" && port == 80:
			return backA.Listener.Addr().String(), nil
		case svc.Name == "svc-b" && port == 8080:
			return backB.Listener.Addr().String(), nil
		}
		return "", fmt.Errorf("test resolver: unexpected %s:%d", svc.Name, port)
	}
	log := logrus.New()
	log.SetOutput(tLogWriter{t})
	log.SetLevel(logrus.DebugLevel)
	c, err := New(client, Options{
		HTTPAddr:       "127.0.0.1:0",
		HTTPSAddr:      "127.0.0.1:0",
		HealthAddr:     "127.0.0.1:0",
		PublishService: "kube-system/k1s-ingress",
		Resolve:        resolve,
		Debounce:       20 * time.Millisecond,
		Log:            log,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	httpAddr, httpsAddr, healthAddr := c.Addrs()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
		return nil
	}
	defer stop()

	hc := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 5 * time.Second}
	get := func(url, host string) (int, string, string) {
		t.Helper()
		req, err := http.NewRequest("GET", url, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		req.Header.Set("X-Forwarded-For", "6.6.6.6") // must not be trusted
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET %s (Host %s): %v", url, host, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("X-Backend"), string(body)
	}

	eventually(t, "readyz", func() error {
		resp, err := hc.Get("http://" + healthAddr.String() + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	if code, _, _ := get("http://"+healthAddr.String()+"/healthz", "x"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}

	base := "http://" + httpAddr.String()
	routes := []struct{ host, path, backend string }{
		{"a.example", "/", "a"},
		{"a.example", "/anything/deep", "a"},
		{"A.EXAMPLE:80", "/x", "a"},
		{"b.example", "/api", "b"},
		{"b.example", "/api/v1/things", "b"},
		{"b.example", "/apiary", "a"},
		{"b.example", "/", "a"},
	}
	for _, r := range routes {
		code, backend, body := get(base+r.path, r.host)
		if code != 200 || backend != r.backend {
			t.Errorf("GET %s%s: %d from backend %q, want 200 from %q (%s)", r.host, r.path, code, backend, r.backend, body)
			continue
		}
		wantHost := "host=" + r.host + " path=" + r.path + " xff=127.0.0.1 proto=http xfhost=" + r.host
		if !strings.Contains(body, wantHost) {
			t.Errorf("GET %s%s: backend saw %q, want %q", r.host, r.path, body, wantHost)
		}
	}
	for _, r := range []struct {
		host string
		code int
	}{
		{"unknown.example", http.StatusNotFound},
		{"c.example", http.StatusNotFound},                // other controller's Ingress
		{"broken.example", http.StatusServiceUnavailable}, // Service missing
	} {
		if code, backend, body := get(base+"/", r.host); code != r.code || backend != "" {
			t.Errorf("GET %s/: %d from %q (%s), want %d from the controller", r.host, code, backend, body, r.code)
		}
	}
	// Health is not served on the proxy port.
	if code, _, _ := get(base+"/healthz", "unknown.example"); code != http.StatusNotFound {
		t.Errorf("/healthz on the proxy port: %d, want 404", code)
	}

	// TLS: the Secret's certificate for its host, the fallback otherwise.
	handshake := func(sni string, cfg *tls.Config) (*x509.Certificate, error) {
		cfg.ServerName = sni
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", httpsAddr.String(), cfg)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0], nil
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	cert, err := handshake("secure.example", &tls.Config{RootCAs: pool}) // verified against the Secret's cert
	if err != nil {
		t.Fatalf("TLS to secure.example: %v", err)
	}
	if cn := cert.Subject.CommonName; cn != "secure-example-cn" {
		t.Errorf("SNI secure.example: certificate CN %q, want secure-example-cn", cn)
	}
	for _, sni := range []string{"other.example", ""} {
		cert, err := handshake(sni, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("TLS with SNI %q: %v", sni, err)
		}
		if cn := cert.Subject.CommonName; cn != FallbackCommonName {
			t.Errorf("SNI %q: certificate CN %q, want %s", sni, cn, FallbackCommonName)
		}
	}
	// An HTTPS request goes through to the backend with X-Forwarded-Proto https.
	hsc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		Proxy:           nil,
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "secure.example"},
	}}
	req, _ := http.NewRequest("GET", "https://"+httpsAddr.String()+"/s", nil)
	req.Host = "secure.example"
	resp, err := hsc.Do(req)
	if err != nil {
		t.Fatalf("HTTPS GET secure.example/s: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("X-Backend") != "b" || !strings.Contains(string(body), "host=secure.example path=/s xff=127.0.0.1 proto=https") {
		t.Errorf("HTTPS GET secure.example/s: %d %q", resp.StatusCode, body)
	}

	// Status: the published Service's addresses, sorted; foreign Ingresses untouched.
	eventually(t, "ingress status", func() error {
		for _, name := range []string{"web", "secure"} {
			got, err := client.NetworkingV1().Ingresses("default").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			lb := got.Status.LoadBalancer.Ingress
			if len(lb) != 2 || lb[0].IP != "192.0.2.10" || lb[1].IP != "192.0.2.20" {
				return fmt.Errorf("%s: status %+v", name, lb)
			}
		}
		return nil
	})
	if got, _ := client.NetworkingV1().Ingresses("default").Get(ctx, "foreign", metav1.GetOptions{}); len(got.Status.LoadBalancer.Ingress) != 0 {
		t.Errorf("foreign Ingress got status %+v", got.Status.LoadBalancer.Ingress)
	}

	// Watch events rebuild the table. The fake API server does not replay
	// events missed before a watch starts, so wait for the watches first.
	eventually(t, "watches started", func() error {
		n := 0
		for _, a := range client.Actions() {
			if a.GetVerb() == "watch" {
				n++
			}
		}
		if n < 4 {
			return fmt.Errorf("%d watches", n)
		}
		return nil
	})
	time.Sleep(50 * time.Millisecond)
	fallback := ing("default", "catchall", 3)
	be := svcBackend("svc-b", "web")
	fallback.Spec.DefaultBackend = &be
	if _, err := client.NetworkingV1().Ingresses("default").Create(ctx, fallback, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "default backend after create", func() error {
		if code, backend, _ := get(base+"/", "unknown.example"); code != 200 || backend != "b" {
			return fmt.Errorf("unknown host: %d from %q", code, backend)
		}
		return nil
	})
	// Deleting a Service makes its routes 503.
	if err := client.CoreV1().Services("default").Delete(ctx, "svc-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "503 after Service delete", func() error {
		if code, _, _ := get(base+"/", "a.example"); code != http.StatusServiceUnavailable {
			return fmt.Errorf("a.example: %d", code)
		}
		return nil
	})

	// Status is written only when it differs: once per Ingress, although
	// every rebuild (including those our own writes caused) compares it.
	writes := 0
	for _, a := range client.Actions() {
		if u, ok := a.(clienttesting.UpdateAction); ok && a.GetSubresource() == "status" {
			if obj, ok := u.GetObject().(metav1.Object); ok && obj.GetName() == "web" {
				writes++
			}
		}
	}
	if writes != 1 {
		t.Errorf("status of default/web written %d times, want 1", writes)
	}

	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if c.Ready() {
		t.Error("still ready after shutdown")
	}
	for _, a := range []net.Addr{httpAddr, httpsAddr, healthAddr} {
		if conn, err := net.DialTimeout("tcp", a.String(), time.Second); err == nil {
			conn.Close()
			t.Errorf("%s still accepts connections after shutdown", a)
		}
	}
}

// TestRunFailsOnBusyPort checks that a port that cannot be bound is an error
// rather than a silent hang.
func TestRunFailsOnBusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := New(fake.NewClientset(), Options{HTTPAddr: ln.Addr().String(), HTTPSAddr: "127.0.0.1:0", HealthAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Run(ctx); err == nil {
		t.Fatal("Run with a busy port: nil error")
	}
}

func TestNewRejectsBadPublishService(t *testing.T) {
	if _, err := New(fake.NewClientset(), Options{PublishService: "no-slash"}); err == nil {
		t.Fatal("New accepted publish service without namespace")
	}
}
