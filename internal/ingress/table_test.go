package ingress

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// ---- object helpers ----

var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

func class(name, controller string, isDefault bool) *networkingv1.IngressClass {
	c := &networkingv1.IngressClass{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       networkingv1.IngressClassSpec{Controller: controller},
	}
	if isDefault {
		c.Annotations = map[string]string{AnnotationDefaultClass: "true"}
	}
	return c
}

// ing makes an Ingress of class k1s created age minutes after epoch.
func ing(ns, name string, age int, rules ...networkingv1.IngressRule) *networkingv1.Ingress {
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:         ns,
			Name:              name,
			CreationTimestamp: metav1.NewTime(epoch.Add(time.Duration(age) * time.Minute)),
		},
		Spec: networkingv1.IngressSpec{IngressClassName: ptr("k1s"), Rules: rules},
	}
}

type p struct {
	path string
	typ  networkingv1.PathType // "" means nil
	svc  string
	port any // int or string
}

func svcBackend(svc string, port any) networkingv1.IngressBackend {
	sb := &networkingv1.IngressServiceBackend{Name: svc}
	switch v := port.(type) {
	case int:
		sb.Port.Number = int32(v)
	case string:
		sb.Port.Name = v
	}
	return networkingv1.IngressBackend{Service: sb}
}

func rule(host string, paths ...p) networkingv1.IngressRule {
	r := networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{}}}
	for _, x := range paths {
		hp := networkingv1.HTTPIngressPath{Path: x.path, Backend: svcBackend(x.svc, x.port)}
		if x.typ != "" {
			hp.PathType = ptr(x.typ)
		}
		r.HTTP.Paths = append(r.HTTP.Paths, hp)
	}
	return r
}

// service makes a ClusterIP Service with an 80 "http" and a 8443 "admin" port.
func service(ns, name, ip string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:      corev1.ServiceTypeClusterIP,
			ClusterIP: ip,
			Ports: []corev1.ServicePort{
				{Name: "http", Port: 80},
				{Name: "admin", Port: 8443},
			},
		},
	}
}

const (
	exact  = networkingv1.PathTypeExact
	prefix = networkingv1.PathTypePrefix
	impl   = networkingv1.PathTypeImplementationSpecific
)

// routeSvc returns "service:port" for host/path, or "404".
func routeSvc(t *testing.T, tab *Table, host, path string) string {
	t.Helper()
	b, ok := tab.Route(host, path)
	if !ok {
		return "404"
	}
	return b.Service
}

func services(names ...string) []*corev1.Service {
	var out []*corev1.Service
	for i, n := range names {
		out = append(out, service("default", n, "10.43.0."+strconv.Itoa(i+1)))
	}
	return out
}

func classes() []*networkingv1.IngressClass {
	return []*networkingv1.IngressClass{class("k1s", ControllerName, true), class("other", "example.com/other", false)}
}

// ---- tests ----

func TestClassSelection(t *testing.T) {
	withLegacy := func(i *networkingv1.Ingress, v string) *networkingv1.Ingress {
		i.Spec.IngressClassName = nil
		i.Annotations = map[string]string{AnnotationLegacyClass: v}
		return i
	}
	noClass := func(i *networkingv1.Ingress) *networkingv1.Ingress { i.Spec.IngressClassName = nil; return i }
	otherClass := func(i *networkingv1.Ingress) *networkingv1.Ingress { i.Spec.IngressClassName = ptr("other"); return i }
	missingClass := func(i *networkingv1.Ingress) *networkingv1.Ingress { i.Spec.IngressClassName = ptr("nope"); return i }

	cases := []struct {
		name    string
		ing     *networkingv1.Ingress
		classes []*networkingv1.IngressClass
		want    bool
	}{
		{"explicit ours", ing("a", "x", 0), classes(), true},
		{"explicit other controller", otherClass(ing("a", "x", 0)), classes(), false},
		{"explicit unknown class", missingClass(ing("a", "x", 0)), classes(), false},
		{"no class, ours default", noClass(ing("a", "x", 0)), classes(), true},
		{"no class, ours not default", noClass(ing("a", "x", 0)),
			[]*networkingv1.IngressClass{class("k1s", ControllerName, false), class("other", "example.com/other", true)}, false},
		{"no class, no classes", noClass(ing("a", "x", 0)), nil, false},
		{"legacy annotation ours", withLegacy(ing("a", "x", 0), "k1s"), []*networkingv1.IngressClass{class("k1s", ControllerName, false)}, true},
		{"legacy annotation other", withLegacy(ing("a", "x", 0), "other"), classes(), false},
		{"class named k1s of another controller", ing("a", "x", 0), []*networkingv1.IngressClass{class("k1s", "example.com/other", true)}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsOurs(tc.ing, tc.classes); got != tc.want {
				t.Fatalf("IsOurs = %v, want %v", got, tc.want)
			}
		})
	}

	// Build serves only ours.
	mine := ing("default", "mine", 0, rule("mine.example", p{"/", prefix, "a", 80}))
	theirs := otherClass(ing("default", "theirs", 0, rule("theirs.example", p{"/", prefix, "a", 80})))
	tab := Build(Snapshot{Ingresses: []*networkingv1.Ingress{mine, theirs}, IngressClasses: classes(), Services: services("a")}, nil)
	if got := routeSvc(t, tab, "mine.example", "/"); got != "a" {
		t.Errorf("mine.example -> %s, want a", got)
	}
	if got := routeSvc(t, tab, "theirs.example", "/"); got != "404" {
		t.Errorf("theirs.example -> %s, want 404 (other controller's Ingress)", got)
	}
	if n := len(tab.Ingresses()); n != 1 || tab.Ingresses()[0].Name != "mine" {
		t.Errorf("Ingresses() = %d items, want only mine", n)
	}
}

func TestHostMatching(t *testing.T) {
	tab := Build(Snapshot{
		Ingresses: []*networkingv1.Ingress{
			ing("default", "hosts", 0,
				rule("foo.example.com", p{"/", prefix, "foo", 80}),
				rule("*.example.com", p{"/", prefix, "wild", 80}),
				rule("Upper.Example.ORG", p{"/", prefix, "upper", 80}),
				rule("", p{"/any", prefix, "anyhost", 80}),
			),
		},
		IngressClasses: classes(),
		Services:       services("foo", "wild", "upper", "anyhost"),
	}, nil)
	cases := []struct{ host, path, want string }{
		{"foo.example.com", "/", "foo"},
		{"FOO.Example.Com", "/x", "foo"},         // case-insensitive
		{"foo.example.com:8080", "/", "foo"},     // port stripped
		{"foo.example.com.", "/", "foo"},         // trailing dot
		{"bar.example.com", "/", "wild"},         // wildcard, one label
		{"bar.example.com:80", "/", "wild"},      // wildcard, port stripped
		{"a.bar.example.com", "/", "404"},        // wildcard covers exactly one label
		{"example.com", "/", "404"},              // wildcard needs a label
		{"upper.example.org", "/", "upper"},      // rule host is case-insensitive too
		{"other.test", "/any/thing", "anyhost"},  // hostless rules apply to every host
		{"foo.example.com", "/any", "foo"},       // the host's own "/" is tried first
		{"a.bar.example.com", "/any", "anyhost"}, // falls through to hostless rules
		{"[::1]:80", "/any", "anyhost"},          // IPv6 literal host
		{"", "/any", "anyhost"},                  // no Host at all
		{"other.test", "/", "404"},               // nothing matches, no default backend
	}
	for _, tc := range cases {
		if got := routeSvc(t, tab, tc.host, tc.path); got != tc.want {
			t.Errorf("Route(%q, %q) = %s, want %s", tc.host, tc.path, got, tc.want)
		}
	}
}

func TestPathMatching(t *testing.T) {
	tab := Build(Snapshot{
		Ingresses: []*networkingv1.Ingress{
			ing("default", "paths", 0,
				rule("h",
					p{"/", prefix, "root", 80},
					p{"/foo", prefix, "foo", 80},
					p{"/foo/bar", prefix, "foobar", 80},
					p{"/foo/bar", exact, "foobar-exact", 80},
					p{"/exact", exact, "exact", 80},
					p{"/trail/", prefix, "trail", 80},
					p{"/impl", impl, "impl", 80},
					p{"/nil", "", "niltype", 80},
				),
			),
		},
		IngressClasses: classes(),
		Services:       services("root", "foo", "foobar", "foobar-exact", "exact", "trail", "impl", "niltype"),
	}, nil)
	cases := []struct{ path, want string }{
		{"/", "root"},
		{"", "root"},
		{"/foo", "foo"},
		{"/foo/", "foo"},
		{"/foo/baz", "foo"},
		{"/foobar", "root"},          // prefix matches whole elements only
		{"/foo/bar", "foobar-exact"}, // Exact beats Prefix of equal length
		{"/foo/bar/", "foobar"},      // Exact does not match with a trailing slash; longer prefix wins
		{"/foo/bar/baz", "foobar"},   // longest prefix wins
		{"/foo/barbaz", "foo"},       // ... by elements
		{"/exact", "exact"},
		{"/exact/", "root"}, // Exact is exact
		{"/exact/x", "root"},
		{"/trail", "trail"}, // "/trail/" as Prefix also matches "/trail"
		{"/trail/x", "trail"},
		{"/trailer", "root"},
		{"/impl/x", "impl"}, // ImplementationSpecific is Prefix
		{"/implx", "root"},
		{"/nil/x", "niltype"}, // no pathType: ImplementationSpecific
	}
	for _, tc := range cases {
		if got := routeSvc(t, tab, "h", tc.path); got != tc.want {
			t.Errorf("Route(h, %q) = %s, want %s", tc.path, got, tc.want)
		}
	}
}

func TestDefaultBackend(t *testing.T) {
	withDefault := func(i *networkingv1.Ingress, svc string) *networkingv1.Ingress {
		b := svcBackend(svc, 80)
		i.Spec.DefaultBackend = &b
		return i
	}
	newer := withDefault(ing("default", "newer", 5), "newer")
	older := withDefault(ing("default", "older", 1, rule("h", p{"/api", prefix, "api", 80})), "older")
	sameAgeB := withDefault(ing("b", "x", 1), "sameb")
	snap := Snapshot{
		Ingresses:      []*networkingv1.Ingress{newer, sameAgeB, older},
		IngressClasses: classes(),
		Services:       services("newer", "older", "api", "sameb"),
	}
	tab := Build(snap, nil)
	if got := routeSvc(t, tab, "h", "/api/x"); got != "api" {
		t.Errorf("rule: got %s, want api", got)
	}
	// b/x and default/older are equally old: namespace/name decides.
	if got := routeSvc(t, tab, "h", "/other"); got != "sameb" {
		t.Errorf("default backend: got %s, want sameb (oldest, then namespace/name)", got)
	}
	if got := routeSvc(t, tab, "nohost", "/"); got != "sameb" {
		t.Errorf("default backend for unknown host: got %s, want sameb", got)
	}
	// Without the tie, the oldest wins.
	snap.Ingresses = []*networkingv1.Ingress{newer, older}
	if got := routeSvc(t, Build(snap, nil), "x", "/"); got != "older" {
		t.Errorf("default backend: got %s, want older", got)
	}
	// No default backend: 404.
	snap.Ingresses = []*networkingv1.Ingress{ing("default", "plain", 0, rule("h", p{"/api", prefix, "api", 80}))}
	if _, ok := Build(snap, nil).Route("h", "/"); ok {
		t.Error("Route without a matching rule or default backend: ok = true")
	}
}

func TestConflictOldestWins(t *testing.T) {
	a := ing("default", "a", 2, rule("h", p{"/", prefix, "svc-a", 80}))
	b := ing("default", "b", 1, rule("h", p{"/", prefix, "svc-b", 80}))
	tab := Build(Snapshot{Ingresses: []*networkingv1.Ingress{a, b}, IngressClasses: classes(), Services: services("svc-a", "svc-b")}, nil)
	if got := routeSvc(t, tab, "h", "/"); got != "svc-b" {
		t.Errorf("conflicting path: got %s, want svc-b (older Ingress)", got)
	}
	if !hasWarning(tab, "ingress default/a:", "already served by ingress default/b") {
		t.Errorf("no conflict warning naming default/a: %q", tab.Warnings())
	}
}

func hasWarning(tab *Table, parts ...string) bool {
	for _, w := range tab.Warnings() {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(w, p)
		}
		if all {
			return true
		}
	}
	return false
}

func TestBackendResolution(t *testing.T) {
	headless := service("default", "headless", corev1.ClusterIPNone)
	ext := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "ext"},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "api.example.net"},
	}
	single := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "single"},
		Spec:       corev1.ServiceSpec{ClusterIP: "10.43.9.9", Ports: []corev1.ServicePort{{Port: 7070}}},
	}
	otherNS := service("elsewhere", "onlythere", "10.43.7.7")
	i := ing("default", "web", 0, rule("h",
		p{"/named", prefix, "svc", "admin"},
		p{"/number", prefix, "svc", 80},
		p{"/badname", prefix, "svc", "nope"},
		p{"/badnumber", prefix, "svc", 81},
		p{"/missing", prefix, "missing", 80},
		p{"/missing-again", prefix, "missing", 80},
		p{"/headless", prefix, "headless", 80},
		p{"/ext", prefix, "ext", 443},
		p{"/single", prefix, "single", nil},
		p{"/otherns", prefix, "onlythere", 80}, // the Service is in another namespace
	))
	tab := Build(Snapshot{
		Ingresses:      []*networkingv1.Ingress{i},
		IngressClasses: classes(),
		Services:       []*corev1.Service{service("default", "svc", "10.43.0.10"), headless, ext, single, otherNS},
	}, nil)
	cases := []struct {
		path, target string
		port         int32
		problem      string
	}{
		{"/named", "10.43.0.10:8443", 8443, ""},
		{"/number", "10.43.0.10:80", 80, ""},
		{"/badname", "", 0, `unknown port name "nope"`},
		{"/badnumber", "", 0, "no port 81"},
		{"/missing", "", 0, "service default/missing not found"},
		{"/headless", "", 80, "no ClusterIP"},
		{"/ext", "api.example.net:443", 443, ""},
		{"/single", "10.43.9.9:7070", 7070, ""},
		{"/otherns", "", 0, "service default/onlythere not found"},
	}
	for _, tc := range cases {
		b, ok := tab.Route("h", tc.path)
		if !ok {
			t.Fatalf("%s: no route", tc.path)
		}
		if b.Target != tc.target || b.Port != tc.port || !strings.Contains(b.Problem, tc.problem) || (tc.problem == "") != (b.Problem == "") {
			t.Errorf("%s: got target %q port %d problem %q, want %q %d %q", tc.path, b.Target, b.Port, b.Problem, tc.target, tc.port, tc.problem)
		}
		if tc.problem != "" && !hasWarning(tab, "ingress default/web:", tc.problem) {
			t.Errorf("%s: no warning naming the Ingress and %q in %q", tc.path, tc.problem, tab.Warnings())
		}
	}
	n := 0
	for _, w := range tab.Warnings() {
		if strings.Contains(w, "default/missing not found") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("a missing Service used twice gave %d warnings, want 1: %q", n, tab.Warnings())
	}
	if b, _ := tab.Route("h", "/named"); b.Ingress != "default/web" || b.Namespace != "default" || b.Service != "svc" {
		t.Errorf("backend identity: %+v", b)
	}

	// A custom resolver receives the Service and the resolved port number.
	calls := map[string]bool{}
	tab = Build(Snapshot{Ingresses: []*networkingv1.Ingress{i}, IngressClasses: classes(), Services: []*corev1.Service{service("default", "svc", "10.43.0.10")}},
		func(svc *corev1.Service, port int32) (string, error) {
			calls[svc.Name+":"+strconv.Itoa(int(port))] = true
			return "resolved:1", nil
		})
	if b, _ := tab.Route("h", "/named"); b.Target != "resolved:1" || !calls["svc:8443"] || !calls["svc:80"] || len(calls) != 2 {
		t.Errorf("custom resolve: target %q, calls %v (want svc:8443 and svc:80)", b.Target, calls)
	}
}

// ---- TLS ----

// testCert returns a self-signed PEM certificate and key with subject cn
// and the given DNS names.
func testCert(t testing.TB, cn string, dns ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     dns,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func tlsSecret(t testing.TB, ns, name, cn string, dns ...string) *corev1.Secret {
	c, k := testCert(t, cn, dns...)
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(ns + "-" + name), ResourceVersion: "1"},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: c, corev1.TLSPrivateKeyKey: k},
	}
}

func withTLS(i *networkingv1.Ingress, secret string, hosts ...string) *networkingv1.Ingress {
	i.Spec.TLS = append(i.Spec.TLS, networkingv1.IngressTLS{SecretName: secret, Hosts: hosts})
	return i
}

func cnOf(tab *Table, sni string) string {
	c := tab.Certificate(sni)
	if c == nil {
		return "<none>"
	}
	return c.Leaf.Subject.CommonName
}

func TestCertificateBySNI(t *testing.T) {
	opaque := tlsSecret(t, "default", "opaque", "opaque-cn")
	opaque.Type = corev1.SecretTypeOpaque
	broken := tlsSecret(t, "default", "broken", "broken-cn")
	broken.Data[corev1.TLSPrivateKeyKey] = []byte("garbage")
	snap := Snapshot{
		Ingresses: []*networkingv1.Ingress{
			withTLS(withTLS(ing("default", "secure", 1, rule("secure.example", p{"/", prefix, "svc", 80})),
				"secure-tls", "secure.example"), "wild-tls", "*.wild.example"),
			// Newer Ingress claiming the same host: loses.
			withTLS(ing("default", "late", 2), "late-tls", "secure.example", "late.example"),
			// TLS section without hosts: the rule hosts.
			withTLS(ing("default", "implicit", 3, rule("implicit.example", p{"/", prefix, "svc", 80})), "implicit-tls"),
			// Secret in another namespace is not visible.
			withTLS(ing("default", "crossns", 4), "elsewhere-tls", "cross.example"),
			withTLS(ing("default", "bad", 5), "missing-tls", "missing.example"),
			withTLS(ing("default", "opaque", 6), "opaque", "opaque.example"),
			withTLS(ing("default", "broken", 7), "broken", "broken.example"),
		},
		IngressClasses: classes(),
		Services:       services("svc"),
		Secrets: []*corev1.Secret{
			tlsSecret(t, "default", "secure-tls", "secure-cn", "secure.example"),
			tlsSecret(t, "default", "wild-tls", "wild-cn", "*.wild.example"),
			tlsSecret(t, "default", "late-tls", "late-cn", "late.example"),
			tlsSecret(t, "default", "implicit-tls", "implicit-cn"),
			tlsSecret(t, "other", "elsewhere-tls", "elsewhere-cn"),
			opaque, broken,
		},
	}
	tab := Build(snap, nil)
	cases := []struct{ sni, want string }{
		{"secure.example", "secure-cn"},
		{"SECURE.Example.", "secure-cn"},
		{"a.wild.example", "wild-cn"},
		{"a.b.wild.example", "<none>"},
		{"wild.example", "<none>"},
		{"late.example", "late-cn"},
		{"implicit.example", "implicit-cn"},
		{"cross.example", "<none>"},
		{"missing.example", "<none>"},
		{"opaque.example", "<none>"},
		{"broken.example", "<none>"},
		{"unknown.example", "<none>"},
		{"", "<none>"},
	}
	for _, tc := range cases {
		if got := cnOf(tab, tc.sni); got != tc.want {
			t.Errorf("Certificate(%q) = %s, want %s", tc.sni, got, tc.want)
		}
	}
	for _, w := range []struct{ ing, text string }{
		{"default/bad", "TLS secret default/missing-tls not found"},
		{"default/crossns", "TLS secret default/elsewhere-tls not found"},
		{"default/opaque", "TLS secret default/opaque not found"},
		{"default/broken", "TLS secret default/broken:"},
	} {
		if !hasWarning(tab, "ingress "+w.ing+":", w.text) {
			t.Errorf("no warning %q for %s in %q", w.text, w.ing, tab.Warnings())
		}
	}

	// The cache parses a Secret once per resourceVersion and reparses a
	// changed one.
	cc := newCertCache()
	first := build(snap, nil, cc)
	cc.commit()
	second := build(snap, nil, cc)
	cc.commit()
	if first.Certificate("secure.example") != second.Certificate("secure.example") {
		t.Error("unchanged Secret was parsed again")
	}
	updated := tlsSecret(t, "default", "secure-tls", "secure-cn-2", "secure.example")
	updated.ResourceVersion = "2"
	snap.Secrets[0] = updated
	if got := cnOf(build(snap, nil, cc), "secure.example"); got != "secure-cn-2" {
		t.Errorf("after Secret update: %s, want secure-cn-2", got)
	}
}

func TestHostsCount(t *testing.T) {
	tab := Build(Snapshot{
		Ingresses: []*networkingv1.Ingress{
			ing("a", "one", 0, rule("x.example", p{"/", prefix, "s", 80}), rule("*.example", p{"/", prefix, "s", 80})),
			ing("b", "two", 0, rule("X.example", p{"/b", prefix, "s", 80}), rule("", p{"/", prefix, "s", 80})),
		},
		IngressClasses: classes(),
	}, nil)
	if len(tab.Ingresses()) != 2 || tab.Hosts() != 2 {
		t.Errorf("got %d Ingresses, %d hosts; want 2, 2", len(tab.Ingresses()), tab.Hosts())
	}
}
