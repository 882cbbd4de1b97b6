package ingress

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

const (
	// ControllerName is the spec.controller of the IngressClasses this
	// controller serves.
	ControllerName = "k1s.io/ingress"
	// AnnotationDefaultClass marks an IngressClass as the cluster default,
	// used by Ingresses that name no class.
	AnnotationDefaultClass = networkingv1.AnnotationIsDefaultIngressClass
	// AnnotationLegacyClass is the deprecated per-Ingress class annotation.
	AnnotationLegacyClass = "kubernetes.io/ingress.class"
)

// Snapshot is the set of API objects a routing table is built from. The
// objects are read, never modified, and may be shared with an informer
// cache.
type Snapshot struct {
	Ingresses      []*networkingv1.Ingress
	IngressClasses []*networkingv1.IngressClass
	Services       []*corev1.Service
	Secrets        []*corev1.Secret
}

// ResolveFunc gives the host:port to dial for port (a port number of the
// Service, already resolved from a port name) of svc.
type ResolveFunc func(svc *corev1.Service, port int32) (string, error)

// DefaultResolve dials ClusterIP:port, and externalName:port for Services
// of type ExternalName. Headless Services and Services without a ClusterIP
// are errors.
func DefaultResolve(svc *corev1.Service, port int32) (string, error) {
	p := strconv.Itoa(int(port))
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		if svc.Spec.ExternalName == "" {
			return "", errors.New("ExternalName service has an empty externalName")
		}
		return net.JoinHostPort(svc.Spec.ExternalName, p), nil
	}
	ip := svc.Spec.ClusterIP
	if ip == "" || ip == corev1.ClusterIPNone {
		return "", errors.New("service has no ClusterIP")
	}
	return net.JoinHostPort(ip, p), nil
}

// Backend is where a request goes. Target is empty when the backend is
// unusable (Problem says why); such requests get a 503.
type Backend struct {
	Ingress   string // namespace/name of the Ingress that defined it
	Namespace string
	Service   string
	Port      int32  // the Service port number
	Target    string // host:port to dial
	Problem   string
}

// Table is an immutable routing table: host rules, default backend and TLS
// certificates of the Ingresses this controller serves.
type Table struct {
	exact     map[string]*pathSet // by lower-case host
	wildcard  map[string]*pathSet // "*.example.com" is stored as "example.com"
	anyHost   *pathSet            // rules without host
	def       *Backend
	certs     map[string]*tls.Certificate
	wildCerts map[string]*tls.Certificate
	ingresses []*networkingv1.Ingress
	warnings  []string
}

type route struct {
	path    string // Exact: as written; Prefix: without trailing slashes
	exact   bool
	backend *Backend
}

// pathSet holds the paths of one host, most specific first: longer paths
// before shorter ones, Exact before Prefix of the same length.
type pathSet struct {
	routes []route
}

func (ps *pathSet) add(r route) (conflict *Backend) {
	for _, o := range ps.routes {
		if o.path == r.path && o.exact == r.exact {
			return o.backend
		}
	}
	ps.routes = append(ps.routes, r)
	return nil
}

func (ps *pathSet) sort() {
	sort.SliceStable(ps.routes, func(i, j int) bool {
		a, b := ps.routes[i], ps.routes[j]
		if len(a.path) != len(b.path) {
			return len(a.path) > len(b.path)
		}
		return a.exact && !b.exact
	})
}

func (ps *pathSet) match(p string) *Backend {
	if ps == nil {
		return nil
	}
	if p == "" {
		p = "/"
	}
	for _, r := range ps.routes {
		if r.exact {
			if p == r.path {
				return r.backend
			}
			continue
		}
		// Prefix matches whole path elements: "/foo" matches "/foo" and
		// "/foo/..." but not "/foobar"; "" (from "/") matches everything.
		if r.path == "" || p == r.path || strings.HasPrefix(p, r.path+"/") {
			return r.backend
		}
	}
	return nil
}

// Route returns the backend for a request to host (a Host header: any port
// is stripped, case is ignored) and path. Host rules are tried from the
// most specific: the exact host, then the wildcard covering it, then rules
// without host; the first of them with a matching path wins, else the
// default backend. ok is false when nothing matches (a 404).
func (t *Table) Route(host, path string) (*Backend, bool) {
	h := normalizeHost(host)
	if b := t.exact[h].match(path); b != nil {
		return b, true
	}
	if i := strings.IndexByte(h, '.'); i > 0 {
		if b := t.wildcard[h[i+1:]].match(path); b != nil {
			return b, true
		}
	}
	if b := t.anyHost.match(path); b != nil {
		return b, true
	}
	if t.def != nil {
		return t.def, true
	}
	return nil, false
}

// Certificate returns the certificate of the Ingress TLS section whose hosts
// cover serverName (an SNI name), or nil.
func (t *Table) Certificate(serverName string) *tls.Certificate {
	h := strings.ToLower(strings.TrimSuffix(serverName, "."))
	if h == "" {
		return nil
	}
	if c := t.certs[h]; c != nil {
		return c
	}
	if i := strings.IndexByte(h, '.'); i > 0 {
		return t.wildCerts[h[i+1:]]
	}
	return nil
}

// Ingresses are the Ingresses the table serves, oldest first.
func (t *Table) Ingresses() []*networkingv1.Ingress { return t.ingresses }

// Hosts is the number of distinct hosts (exact and wildcard) with rules.
func (t *Table) Hosts() int { return len(t.exact) + len(t.wildcard) }

// Warnings are the problems found while building: bad references, naming
// the Ingress.
func (t *Table) Warnings() []string { return t.warnings }

func normalizeHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	} else if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// IsOurs reports whether ing is served by this controller given the
// cluster's IngressClasses: its spec.ingressClassName (or else the legacy
// annotation) names a class of ours, or it names no class and a class of
// ours is the default one.
func IsOurs(ing *networkingv1.Ingress, classes []*networkingv1.IngressClass) bool {
	ours, def := ourClasses(classes)
	return isOurs(ing, ours, def)
}

func ourClasses(classes []*networkingv1.IngressClass) (map[string]bool, bool) {
	ours := map[string]bool{}
	def := false
	for _, c := range classes {
		if c.Spec.Controller != ControllerName {
			continue
		}
		ours[c.Name] = true
		if c.Annotations[AnnotationDefaultClass] == "true" {
			def = true
		}
	}
	return ours, def
}

func isOurs(ing *networkingv1.Ingress, ours map[string]bool, def bool) bool {
	if ing.Spec.IngressClassName != nil {
		return ours[*ing.Spec.IngressClassName]
	}
	if name, ok := ing.Annotations[AnnotationLegacyClass]; ok {
		return ours[name]
	}
	return def
}

// Build makes the routing table of the Ingresses of s that are ours,
// resolving backends with resolve (DefaultResolve when nil).
func Build(s Snapshot, resolve ResolveFunc) *Table {
	return build(s, resolve, nil)
}

type builder struct {
	t        *Table
	resolve  ResolveFunc
	services map[string]*corev1.Service
	secrets  map[string]*corev1.Secret
	certs    *certCache
	warned   map[string]bool
}

func build(s Snapshot, resolve ResolveFunc, cc *certCache) *Table {
	if resolve == nil {
		resolve = DefaultResolve
	}
	b := &builder{
		t: &Table{
			exact:     map[string]*pathSet{},
			wildcard:  map[string]*pathSet{},
			anyHost:   &pathSet{},
			certs:     map[string]*tls.Certificate{},
			wildCerts: map[string]*tls.Certificate{},
		},
		resolve:  resolve,
		services: map[string]*corev1.Service{},
		secrets:  map[string]*corev1.Secret{},
		certs:    cc,
		warned:   map[string]bool{},
	}
	for _, svc := range s.Services {
		b.services[svc.Namespace+"/"+svc.Name] = svc
	}
	for _, sec := range s.Secrets {
		if sec.Type == corev1.SecretTypeTLS {
			b.secrets[sec.Namespace+"/"+sec.Name] = sec
		}
	}
	ours, def := ourClasses(s.IngressClasses)
	for _, ing := range s.Ingresses {
		if isOurs(ing, ours, def) {
			b.t.ingresses = append(b.t.ingresses, ing)
		}
	}
	// Oldest first: it wins conflicts (same host and path, same TLS host,
	// several default backends).
	sort.Slice(b.t.ingresses, func(i, j int) bool {
		a, c := b.t.ingresses[i], b.t.ingresses[j]
		if !a.CreationTimestamp.Equal(&c.CreationTimestamp) {
			return a.CreationTimestamp.Before(&c.CreationTimestamp)
		}
		if a.Namespace != c.Namespace {
			return a.Namespace < c.Namespace
		}
		return a.Name < c.Name
	})
	for _, ing := range b.t.ingresses {
		b.addIngress(ing)
	}
	for _, m := range []map[string]*pathSet{b.t.exact, b.t.wildcard} {
		for _, ps := range m {
			ps.sort()
		}
	}
	b.t.anyHost.sort()
	return b.t
}

func (b *builder) warnf(ing *networkingv1.Ingress, format string, args ...any) {
	w := fmt.Sprintf("ingress %s/%s: ", ing.Namespace, ing.Name) + fmt.Sprintf(format, args...)
	if !b.warned[w] { // e.g. one missing Service used by several paths
		b.warned[w] = true
		b.t.warnings = append(b.t.warnings, w)
	}
}

func (b *builder) addIngress(ing *networkingv1.Ingress) {
	key := ing.Namespace + "/" + ing.Name
	if ing.Spec.DefaultBackend != nil && b.t.def == nil {
		b.t.def = b.backend(ing, ing.Spec.DefaultBackend)
	}
	var ruleHosts []string
	for _, rule := range ing.Spec.Rules {
		host := strings.ToLower(rule.Host)
		if host != "" {
			ruleHosts = append(ruleHosts, host)
		}
		if rule.HTTP == nil {
			continue
		}
		ps := b.pathSet(host)
		for i := range rule.HTTP.Paths {
			p := &rule.HTTP.Paths[i]
			r := route{path: p.Path, exact: p.PathType != nil && *p.PathType == networkingv1.PathTypeExact}
			if r.path == "" {
				r.path = "/"
			}
			if !r.exact {
				r.path = strings.TrimRight(r.path, "/")
			}
			r.backend = b.backend(ing, &p.Backend)
			if prev := ps.add(r); prev != nil && prev.Ingress != key {
				b.warnf(ing, "host %q path %q is already served by ingress %s", rule.Host, p.Path, prev.Ingress)
			}
		}
	}
	for _, t := range ing.Spec.TLS {
		if t.SecretName == "" {
			continue
		}
		cert := b.certificate(ing, t.SecretName)
		if cert == nil {
			continue
		}
		hosts := t.Hosts
		if len(hosts) == 0 {
			hosts = ruleHosts
		}
		for _, h := range hosts {
			h = strings.ToLower(h)
			m := b.t.certs
			if rest, ok := strings.CutPrefix(h, "*."); ok {
				m, h = b.t.wildCerts, rest
			}
			if _, taken := m[h]; !taken && h != "" {
				m[h] = cert
			}
		}
	}
}

func (b *builder) pathSet(host string) *pathSet {
	m := b.t.exact
	switch {
	case host == "":
		return b.t.anyHost
	case strings.HasPrefix(host, "*."):
		m, host = b.t.wildcard, host[2:]
	}
	ps := m[host]
	if ps == nil {
		ps = &pathSet{}
		m[host] = ps
	}
	return ps
}

func (b *builder) backend(ing *networkingv1.Ingress, ib *networkingv1.IngressBackend) *Backend {
	be := &Backend{Ingress: ing.Namespace + "/" + ing.Name, Namespace: ing.Namespace}
	fail := func(format string, args ...any) *Backend {
		be.Problem = fmt.Sprintf(format, args...)
		b.warnf(ing, "%s", be.Problem)
		return be
	}
	if ib.Service == nil {
		return fail("only service backends are supported")
	}
	be.Service = ib.Service.Name
	svc := b.services[ing.Namespace+"/"+ib.Service.Name]
	if svc == nil {
		return fail("service %s/%s not found", ing.Namespace, ib.Service.Name)
	}
	port, err := servicePort(svc, ib.Service.Port)
	if err != nil {
		return fail("service %s/%s: %v", svc.Namespace, svc.Name, err)
	}
	be.Port = port
	target, err := b.resolve(svc, port)
	if err != nil {
		return fail("service %s/%s: %v", svc.Namespace, svc.Name, err)
	}
	be.Target = target
	return be
}

// servicePort resolves an Ingress backend port to a port number of svc.
func servicePort(svc *corev1.Service, p networkingv1.ServiceBackendPort) (int32, error) {
	switch {
	case p.Name != "":
		for _, sp := range svc.Spec.Ports {
			if sp.Name == p.Name {
				return sp.Port, nil
			}
		}
		return 0, fmt.Errorf("unknown port name %q", p.Name)
	case p.Number != 0:
		if svc.Spec.Type == corev1.ServiceTypeExternalName {
			return p.Number, nil // the port is the external one
		}
		for _, sp := range svc.Spec.Ports {
			if sp.Port == p.Number {
				return p.Number, nil
			}
		}
		return 0, fmt.Errorf("no port %d", p.Number)
	case len(svc.Spec.Ports) == 1:
		return svc.Spec.Ports[0].Port, nil
	}
	return 0, errors.New("backend names no port")
}

func (b *builder) certificate(ing *networkingv1.Ingress, name string) *tls.Certificate {
	sec := b.secrets[ing.Namespace+"/"+name]
	if sec == nil {
		b.warnf(ing, "TLS secret %s/%s not found (or not of type %s)", ing.Namespace, name, corev1.SecretTypeTLS)
		return nil
	}
	cert, err := b.certs.load(sec)
	if err != nil {
		b.warnf(ing, "TLS secret %s/%s: %v", ing.Namespace, name, err)
		return nil
	}
	if cert.Leaf != nil && time.Now().After(cert.Leaf.NotAfter) {
		b.warnf(ing, "TLS secret %s/%s: certificate expired on %s", ing.Namespace, name, cert.Leaf.NotAfter.Format(time.RFC3339))
	}
	return cert
}
