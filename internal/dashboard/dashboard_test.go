package dashboard

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
)

func TestSessionsExpireAndCSRF(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newSessions(time.Hour, 3*time.Hour)
	s.now = func() time.Time { return now }
	a := s.create("tok", "alice", nil)
	if len(a.id) != 43 || a.id == a.csrf {
		t.Fatalf("id %q (want 43 chars of 32 random bytes) csrf %q", a.id, a.csrf)
	}
	if s.get(a.id) != a || s.get("nope") != nil || s.get("") != nil {
		t.Fatal("lookup by id is wrong")
	}
	if !a.validCSRF(a.csrf) || a.validCSRF("") || a.validCSRF(a.csrf[:10]) || a.validCSRF(a.id) {
		t.Fatal("CSRF check accepts a wrong token or rejects the right one")
	}
	now = now.Add(59 * time.Minute)
	if s.get(a.id) == nil {
		t.Fatal("session expired before the idle time")
	}
	now = now.Add(61 * time.Minute)
	if s.get(a.id) != nil {
		t.Fatal("session outlived its idle time")
	}
	b := s.create("tok", "bob", nil)
	for i := 0; i < 4; i++ {
		now = now.Add(50 * time.Minute)
		s.get(b.id)
	}
	if s.get(b.id) != nil {
		t.Fatal("session outlived its maximum age")
	}
}

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLimiter(3, time.Minute)
	l.now = func() time.Time { return now }
	for i := 0; i < 3; i++ {
		if !l.allow("1.2.3.4") {
			t.Fatalf("attempt %d refused", i+1)
		}
	}
	if l.allow("1.2.3.4") {
		t.Fatal("4th attempt in a minute allowed")
	}
	if !l.allow("5.6.7.8") {
		t.Fatal("another address is limited too")
	}
	now = now.Add(61 * time.Second)
	if !l.allow("1.2.3.4") {
		t.Fatal("still limited after the window")
	}
}

func TestDescribe(t *testing.T) {
	gr := schema.GroupResource{Group: "apps", Resource: "deployments"}
	got := describe(apierrors.NewForbidden(gr, "web", nil), "scale deployments default/web")
	if !strings.HasPrefix(got, "forbidden: scale deployments default/web") {
		t.Fatalf("forbidden: %q", got)
	}
	if got := describe(apierrors.NewUnauthorized("x"), "list pods"); !strings.HasPrefix(got, "unauthorized:") {
		t.Fatalf("unauthorized: %q", got)
	}
	if got := describe(apierrors.NewNotFound(gr, "web"), "get deployment web"); got != "not found: get deployment web" {
		t.Fatalf("not found: %q", got)
	}
	if describe(nil, "x") != "" {
		t.Fatal("nil error has a message")
	}
	if statusOf(apierrors.NewForbidden(gr, "web", nil)) != 403 {
		t.Fatal("forbidden is not 403")
	}
}

func TestViews(t *testing.T) {
	now := time.Unix(100000, 0)
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", CreationTimestamp: metav1.NewTime(now.Add(-3 * time.Hour)),
			Labels: map[string]string{"node-role.kubernetes.io/control-plane": "true", "node-role.kubernetes.io/master": "true"}},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			Capacity:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("4Gi")},
			NodeInfo:   corev1.NodeSystemInfo{KubeletVersion: "v1.37.2"},
		},
	}
	v := nodeView(n, &usage{CPU: resource.MustParse("500m"), Memory: resource.MustParse("1Gi")}, now)
	want := NodeView{Name: "n1", Status: "Ready", Ready: true, Roles: "control-plane,master", Version: "v1.37.2", Age: "3h",
		CPU: "2", Memory: "4096Mi", CPUUsage: "500m (25%)", MemoryUsage: "1024Mi (25%)"}
	if v != want {
		t.Fatalf("node view\n got %+v\nwant %+v", v, want)
	}
	n.Status.Conditions[0].Status = corev1.ConditionFalse
	if v := nodeView(n, nil, now); v.Ready || v.Status != "NotReady" || v.CPUUsage != "" {
		t.Fatalf("not-ready node without metrics: %+v", v)
	}

	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", CreationTimestamp: metav1.NewTime(now.Add(-30 * time.Second))},
		Spec:       corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "a"}, {Name: "b"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{
			{Name: "a", Ready: true, RestartCount: 2, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
			{Name: "b", RestartCount: 5, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}},
		}},
	}
	pv := podView(p, now)
	if pv.Status != "CrashLoopBackOff" || pv.OK || pv.Ready != "1/2" || pv.Restarts != 7 || pv.Age != "30s" || pv.Node != "n1" {
		t.Fatalf("pod view: %+v", pv)
	}
	if cs := containerViews(p); len(cs) != 2 || cs[1].State != "Waiting: CrashLoopBackOff" || !cs[0].Ready {
		t.Fatalf("containers: %+v", cs)
	}
	ph := podPhases([]corev1.Pod{*p, *p, {Status: corev1.PodStatus{Phase: corev1.PodPending}}})
	if ph[0] != (PhaseCount{"Running", 2}) || ph[1] != (PhaseCount{"Pending", 1}) || ph[2].Count != 0 {
		t.Fatalf("phases: %+v", ph)
	}

	three := int32(3)
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: appsv1.DeploymentSpec{Replicas: &three},
		Status: appsv1.DeploymentStatus{ReadyReplicas: 1}}
	if w := deploymentView(d, now); w.Ready != "1/3" || w.Desired != 3 || !w.Scalable {
		t.Fatalf("deployment: %+v", w)
	}

	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer,
		Ports: []corev1.ServicePort{{Port: 443, NodePort: 30443, Protocol: corev1.ProtocolTCP}}}}
	if sv := serviceView(svc, now); sv.Ports != "443:30443/TCP" || sv.LoadBalancer != "<pending>" {
		t.Fatalf("service: %+v", sv)
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "10.0.0.5"}, {IP: "10.0.0.6"}}
	if sv := serviceView(svc, now); sv.LoadBalancer != "10.0.0.5, 10.0.0.6" {
		t.Fatalf("service addresses: %+v", sv)
	}
}

func TestParseAct(t *testing.T) {
	form := func(kv ...string) func(string) string {
		v := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v.Get
	}
	a, err := parseAct(form("action", "scale", "kind", "Deployment", "ns", "default", "name", "web", "replicas", "3"))
	if err != nil || a.Replicas != 3 || a.Describe() != "Scale Deployment default/web to 3 replicas?" {
		t.Fatalf("%+v %v", a, err)
	}
	for _, bad := range [][]string{
		{"action", "scale", "kind", "DaemonSet", "ns", "default", "name", "web", "replicas", "3"},
		{"action", "scale", "kind", "Deployment", "ns", "default", "name", "web", "replicas", "-1"},
		{"action", "scale", "kind", "Deployment", "ns", "Bad_NS", "name", "web", "replicas", "1"},
		{"action", "delete", "kind", "Deployment", "ns", "default", "name", "web"},
		{"action", "explode", "kind", "Pod", "ns", "default", "name", "web"},
	} {
		if _, err := parseAct(form(bad...)); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// signedIn returns a server whose one session uses kube, and its cookie.
func signedIn(t *testing.T, kube kubernetes.Interface) (*Server, *http.Cookie, *session) {
	t.Helper()
	s, err := New(Config{APIServer: "https://127.0.0.1:1", NewClient: func(*rest.Config) (kubernetes.Interface, error) { return kube, nil }})
	if err != nil {
		t.Fatal(err)
	}
	ss := s.sessions.create("tok", "tester", kube)
	return s, &http.Cookie{Name: cookieName, Value: ss.id}, ss
}

func TestActionForbiddenAndCSRF(t *testing.T) {
	kube := fake.NewSimpleClientset()
	kube.PrependReactor("update", "deployments", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "deployments/scale"}, "web", nil)
	})
	s, cookie, ss := signedIn(t, kube)
	post := func(v url.Values) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "https://dash/action", strings.NewReader(v.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.AddCookie(cookie)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		return w
	}
	v := url.Values{"action": {"scale"}, "kind": {"Deployment"}, "ns": {"default"}, "name": {"web"}, "replicas": {"3"}}
	if w := post(v); w.Code != 403 || !strings.Contains(w.Body.String(), "CSRF") || len(kube.Actions()) != 0 {
		t.Fatalf("without CSRF token: %d %s, actions %v", w.Code, w.Body, kube.Actions())
	}
	v.Set("csrf", ss.csrf)
	w := post(v)
	if w.Code != 403 || !strings.Contains(w.Body.String(), "forbidden: scale deployments default/web") {
		t.Fatalf("forbidden scale: %d %s", w.Code, w.Body)
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Fatalf("CSP %q", csp)
	}
}

func TestPagesNeedSessionAndShowForbidden(t *testing.T) {
	kube := fake.NewSimpleClientset(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "default"}, Status: corev1.PodStatus{Phase: corev1.PodRunning}})
	kube.PrependReactor("list", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "", nil)
	})
	s, cookie, _ := signedIn(t, kube)
	w := httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest("GET", "https://dash/", nil))
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/login" {
		t.Fatalf("no session: %d %v", w.Code, w.Header())
	}
	r := httptest.NewRequest("GET", "https://dash/", nil)
	r.AddCookie(cookie)
	w = httptest.NewRecorder()
	s.ServeHTTP(w, r)
	body := w.Body.String()
	if w.Code != 200 || !strings.Contains(body, "forbidden: list nodes") || !strings.Contains(body, "<b>1</b> Running") {
		t.Fatalf("overview: %d\n%s", w.Code, body)
	}
	r = httptest.NewRequest("GET", "https://dash/workloads?ns=default&fragment=1", nil)
	r.AddCookie(cookie)
	w = httptest.NewRecorder()
	s.ServeHTTP(w, r)
	if body := w.Body.String(); w.Code != 200 || !strings.Contains(body, "web-1") || strings.Contains(body, "<html") {
		t.Fatalf("workloads fragment: %d\n%s", w.Code, body)
	}
}

func TestLoginSetsStrictCookieAndIsRateLimited(t *testing.T) {
	s, _, _ := signedIn(t, fake.NewSimpleClientset())
	login := func(tok string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "https://dash/login", strings.NewReader(url.Values{"token": {tok}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = "192.0.2.7:5555"
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		return w
	}
	w := login("abc.def")
	if w.Code != http.StatusSeeOther {
		t.Fatalf("sign-in: %d %s", w.Code, w.Body)
	}
	c := w.Result().Cookies()
	if len(c) != 1 || !c[0].HttpOnly || !c[0].Secure || c[0].SameSite != http.SameSiteStrictMode || len(c[0].Value) != 43 {
		t.Fatalf("cookie: %+v", c)
	}
	if s.sessions.get(c[0].Value) == nil {
		t.Fatal("cookie names no session")
	}
	if w := login("two words"); w.Code != http.StatusBadRequest {
		t.Fatalf("malformed token: %d", w.Code)
	}
	for i := 0; i < 8; i++ {
		login("x")
	}
	if w := login("abc.def"); w.Code != http.StatusTooManyRequests || !strings.Contains(w.Body.String(), "Too many sign-in attempts") {
		t.Fatalf("11th attempt in a minute: %d", w.Code)
	}
}
