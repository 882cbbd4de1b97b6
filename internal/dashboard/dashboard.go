// Package dashboard is k1s-dashboard's web UI: server-side rendered pages
// (html/template) of the cluster's nodes, workloads and Pods, a Pod's live
// logs, and a few actions (scale, rollout restart, delete Pod). Every API
// call is made with the signed-in user's bearer token, so the user's RBAC
// rules decide what the pages show and what the actions may do; the
// dashboard holds no rights of its own. It lives in its own image, never in
// the k1s binary: html/template there would defeat the linker's dead-code
// elimination.
package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

//go:embed web
var webFS embed.FS

const cookieName = "__Host-k1s-dashboard"

// Config is what the dashboard needs to reach the API server.
type Config struct {
	// APIServer is the API's URL, e.g. https://10.43.0.1:443.
	APIServer string
	// CAData is the PEM CA bundle that verifies the API server.
	CAData []byte
	// NewClient builds the user's client; nil means client-go's. Tests
	// replace it with a fake.
	NewClient func(rc *rest.Config) (kubernetes.Interface, error)
	Logger    *log.Logger
}

// Server serves the dashboard.
type Server struct {
	cfg      Config
	sessions *sessions
	limiter  *limiter
	pages    map[string]*template.Template
	static   http.Handler
	now      func() time.Time
}

// New parses the embedded templates and returns the dashboard's handler.
func New(cfg Config) (*Server, error) {
	if cfg.NewClient == nil {
		cfg.NewClient = func(rc *rest.Config) (kubernetes.Interface, error) { return kubernetes.NewForConfig(rc) }
	}
	if cfg.Logger == nil {
		cfg.Logger = log.Default()
	}
	s := &Server{cfg: cfg, sessions: newSessions(time.Hour, 12*time.Hour), limiter: newLimiter(10, time.Minute),
		pages: map[string]*template.Template{}, now: time.Now}
	funcs := template.FuncMap{"q": url.QueryEscape}
	for _, p := range []string{"login", "overview", "workloads", "pod", "confirm", "message"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(webFS, "web/layout.html", "web/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", p, err)
		}
		s.pages[p] = t
	}
	static, err := fs.Sub(webFS, "web/static")
	if err != nil {
		return nil, err
	}
	s.static = http.StripPrefix("/static/", http.FileServer(http.FS(static)))
	return s, nil
}

// ServeHTTP sets the security headers every response carries and routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Strict-Transport-Security", "max-age=31536000")
	switch r.URL.Path {
	case "/healthz":
		_, _ = io.WriteString(w, "ok\n")
		return
	case "/login":
		s.login(w, r)
		return
	}
	if strings.HasPrefix(r.URL.Path, "/static/") {
		h.Set("Cache-Control", "no-cache")
		s.static.ServeHTTP(w, r)
		return
	}
	h.Set("Cache-Control", "no-store")
	ss := s.session(r)
	if ss == nil {
		if r.Method == http.MethodGet && r.URL.Query().Get("fragment") == "" && r.URL.Path != "/logs" {
			http.Redirect(w, r, "/login", http.StatusSeeOther)
		} else {
			http.Error(w, "not signed in: open /login", http.StatusUnauthorized)
		}
		return
	}
	if r.Method == http.MethodPost && !ss.validCSRF(r.PostFormValue("csrf")) {
		s.message(w, ss, http.StatusForbidden, "The form's CSRF token is missing or stale: reload the page and try again.")
		return
	}
	switch {
	case r.URL.Path == "/" && r.Method == http.MethodGet:
		s.overview(w, r, ss)
	case r.URL.Path == "/workloads" && r.Method == http.MethodGet:
		s.workloads(w, r, ss)
	case r.URL.Path == "/pod" && r.Method == http.MethodGet:
		s.pod(w, r, ss)
	case r.URL.Path == "/logs" && r.Method == http.MethodGet:
		s.logs(w, r, ss)
	case r.URL.Path == "/confirm" && r.Method == http.MethodGet:
		s.confirm(w, r, ss)
	case r.URL.Path == "/action" && r.Method == http.MethodPost:
		s.action(w, r, ss)
	case r.URL.Path == "/logout" && r.Method == http.MethodPost:
		s.sessions.delete(ss.id)
		http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	default:
		s.message(w, ss, http.StatusNotFound, "No such page: "+r.Method+" "+r.URL.Path)
	}
}

func (s *Server) session(r *http.Request) *session {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return nil
	}
	return s.sessions.get(c.Value)
}

// page is what every template gets.
type page struct {
	Title, User, CSRF, Message, Error string
	Refresh                           string // URL the script polls for the live part, "" for none
	Data                              any
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	tmpl := "layout.html"
	if r != nil && r.URL.Query().Get("fragment") != "" {
		tmpl = "live"
	}
	w.WriteHeader(status)
	if err := s.pages[name].ExecuteTemplate(w, tmpl, p); err != nil {
		s.cfg.Logger.Printf("rendering %s: %v", name, err)
	}
}

func (s *Server) message(w http.ResponseWriter, ss *session, status int, msg string) {
	p := page{Title: http.StatusText(status), Error: msg}
	if ss != nil {
		p.User, p.CSRF = ss.user, ss.csrf
	}
	s.render(w, nil, status, "message", p)
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	switch r.Method {
	case http.MethodGet:
		s.render(w, nil, http.StatusOK, "login", page{Title: "Sign in"})
		return
	case http.MethodPost:
	default:
		http.Error(w, "use GET or POST", http.StatusMethodNotAllowed)
		return
	}
	if !s.limiter.allow(clientIP(r)) {
		s.render(w, nil, http.StatusTooManyRequests, "login", page{Title: "Sign in", Error: "Too many sign-in attempts from your address: wait a minute and try again."})
		return
	}
	token := strings.TrimSpace(r.PostFormValue("token"))
	if token == "" || strings.ContainsAny(token, " \t\r\n") {
		s.render(w, nil, http.StatusBadRequest, "login", page{Title: "Sign in", Error: "Paste a bearer token (one line, e.g. from `k1s dashboard token`)."})
		return
	}
	rc := &rest.Config{Host: s.cfg.APIServer, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: s.cfg.CAData}, Timeout: 30 * time.Second}
	kube, err := s.cfg.NewClient(rc)
	if err != nil {
		s.render(w, nil, http.StatusInternalServerError, "login", page{Title: "Sign in", Error: "Cannot build an API client: " + err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	user := "?"
	rev, err := kube.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	switch {
	case err == nil:
		user = rev.Status.UserInfo.Username
	case statusOf(err) == http.StatusUnauthorized:
		s.render(w, nil, http.StatusUnauthorized, "login", page{Title: "Sign in", Error: "The cluster did not accept this token (wrong, expired or revoked)."})
		return
	case statusOf(err) == http.StatusForbidden:
		// Authenticated, only not allowed to review itself: still a user.
	default:
		s.render(w, nil, http.StatusBadGateway, "login", page{Title: "Sign in", Error: describe(err, "checking the token")})
		return
	}
	ss := s.sessions.create(token, user, kube)
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: ss.id, Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) base(ss *session, title string) page {
	return page{Title: title, User: ss.user, CSRF: ss.csrf}
}

// overviewData is the overview page's model; each part has its own error.
type overviewData struct {
	Nodes                 []NodeView
	NodesErr, MetricsNote string
	Phases                []PhaseCount
	PodTotal              int
	PodsErr               string
	Warnings              []EventView
	EventsErr             string
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	now := s.now()
	d := overviewData{}
	nodes, err := ss.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	d.NodesErr = describe(err, "list nodes")
	if err == nil {
		use, uerr := nodeUsage(ctx, ss.kube)
		if uerr != nil {
			d.MetricsNote = "Usage unavailable: " + describe(uerr, "read node metrics (metrics.k8s.io)")
		}
		for i := range nodes.Items {
			n := &nodes.Items[i]
			var u *usage
			if x, ok := use[n.Name]; ok {
				u = &x
			}
			d.Nodes = append(d.Nodes, nodeView(n, u, now))
		}
	}
	pods, err := ss.kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	d.PodsErr = describe(err, "list pods in all namespaces")
	if err == nil {
		d.Phases, d.PodTotal = podPhases(pods.Items), len(pods.Items)
	}
	evs, err := ss.kube.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: "type=Warning"})
	d.EventsErr = describe(err, "list events in all namespaces")
	if err == nil {
		d.Warnings = eventViews(evs.Items, 20, now)
	}
	p := s.base(ss, "Overview")
	p.Refresh, p.Data = "/?fragment=1", d
	s.render(w, r, http.StatusOK, "overview", p)
}

// nodeUsage reads metrics.k8s.io; it is an optional add-on, so its
// absence is a note, not an error of the page.
func nodeUsage(ctx context.Context, kube kubernetes.Interface) (map[string]usage, error) {
	raw, err := kube.CoreV1().RESTClient().Get().AbsPath("/apis/metrics.k8s.io/v1beta1/nodes").DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	var list struct {
		Items []struct {
			Metadata struct{ Name string } `json:"metadata"`
			Usage    struct {
				CPU    resource.Quantity `json:"cpu"`
				Memory resource.Quantity `json:"memory"`
			} `json:"usage"`
		} `json:"items"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("decoding node metrics: %w", err)
	}
	out := map[string]usage{}
	for _, it := range list.Items {
		out[it.Metadata.Name] = usage{CPU: it.Usage.CPU, Memory: it.Usage.Memory}
	}
	return out, nil
}

type workloadsData struct {
	Namespace     string
	Namespaces    []string
	Workloads     []WorkloadView
	WorkloadsErrs []string
	Pods          []PodView
	PodsErr       string
	Services      []ServiceView
	ServicesErr   string
	Ingresses     []IngressView
	IngressesErr  string
}

// namespaceParam is the ns query parameter, checked so that it can go into
// API paths and messages as it is.
func namespaceParam(r *http.Request, def string) (string, error) {
	ns := r.URL.Query().Get("ns")
	if ns == "" {
		return def, nil
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return "", fmt.Errorf("namespace %q is not valid: %s", ns, strings.Join(errs, "; "))
	}
	return ns, nil
}

func (s *Server) workloads(w http.ResponseWriter, r *http.Request, ss *session) {
	ns, err := namespaceParam(r, "default")
	if err != nil {
		s.message(w, ss, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	now := s.now()
	d := workloadsData{Namespace: ns}
	if l, err := ss.kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err == nil {
		for _, n := range l.Items {
			d.Namespaces = append(d.Namespaces, n.Name)
		}
	}
	in := " in namespace " + ns
	apps, batch := ss.kube.AppsV1(), ss.kube.BatchV1()
	if l, err := apps.Deployments(ns).List(ctx, metav1.ListOptions{}); err != nil {
		d.WorkloadsErrs = append(d.WorkloadsErrs, describe(err, "list deployments"+in))
	} else {
		for i := range l.Items {
			d.Workloads = append(d.Workloads, deploymentView(&l.Items[i], now))
		}
	}
	if l, err := apps.StatefulSets(ns).List(ctx, metav1.ListOptions{}); err != nil {
		d.WorkloadsErrs = append(d.WorkloadsErrs, describe(err, "list statefulsets"+in))
	} else {
		for i := range l.Items {
			d.Workloads = append(d.Workloads, statefulSetView(&l.Items[i], now))
		}
	}
	if l, err := apps.DaemonSets(ns).List(ctx, metav1.ListOptions{}); err != nil {
		d.WorkloadsErrs = append(d.WorkloadsErrs, describe(err, "list daemonsets"+in))
	} else {
		for i := range l.Items {
			d.Workloads = append(d.Workloads, daemonSetView(&l.Items[i], now))
		}
	}
	if l, err := batch.Jobs(ns).List(ctx, metav1.ListOptions{}); err != nil {
		d.WorkloadsErrs = append(d.WorkloadsErrs, describe(err, "list jobs"+in))
	} else {
		for i := range l.Items {
			d.Workloads = append(d.Workloads, jobView(&l.Items[i], now))
		}
	}
	if l, err := batch.CronJobs(ns).List(ctx, metav1.ListOptions{}); err != nil {
		d.WorkloadsErrs = append(d.WorkloadsErrs, describe(err, "list cronjobs"+in))
	} else {
		for i := range l.Items {
			d.Workloads = append(d.Workloads, cronJobView(&l.Items[i], now))
		}
	}
	if l, err := ss.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err != nil {
		d.PodsErr = describe(err, "list pods"+in)
	} else {
		for i := range l.Items {
			d.Pods = append(d.Pods, podView(&l.Items[i], now))
		}
	}
	if l, err := ss.kube.CoreV1().Services(ns).List(ctx, metav1.ListOptions{}); err != nil {
		d.ServicesErr = describe(err, "list services"+in)
	} else {
		for i := range l.Items {
			d.Services = append(d.Services, serviceView(&l.Items[i], now))
		}
	}
	if l, err := ss.kube.NetworkingV1().Ingresses(ns).List(ctx, metav1.ListOptions{}); err != nil {
		d.IngressesErr = describe(err, "list ingresses"+in)
	} else {
		for i := range l.Items {
			d.Ingresses = append(d.Ingresses, ingressView(&l.Items[i], now))
		}
	}
	p := s.base(ss, "Workloads in "+ns)
	p.Message = r.URL.Query().Get("msg")
	p.Refresh, p.Data = "/workloads?ns="+url.QueryEscape(ns)+"&fragment=1", d
	s.render(w, r, http.StatusOK, "workloads", p)
}

type podData struct {
	Namespace, Name string
	Pod             PodView
	Containers      []ContainerView
	Conditions      []corev1.PodCondition
	Events          []EventView
	EventsErr       string
}

func (s *Server) pod(w http.ResponseWriter, r *http.Request, ss *session) {
	ns, err := namespaceParam(r, "default")
	if err != nil {
		s.message(w, ss, http.StatusBadRequest, err.Error())
		return
	}
	name := r.URL.Query().Get("name")
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		s.message(w, ss, http.StatusBadRequest, fmt.Sprintf("Pod name %q is not valid: %s", name, strings.Join(errs, "; ")))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	p, err := ss.kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		s.message(w, ss, statusOf(err), describe(err, "get pod "+ns+"/"+name))
		return
	}
	now := s.now()
	d := podData{Namespace: ns, Name: name, Pod: podView(p, now), Containers: containerViews(p), Conditions: p.Status.Conditions}
	evs, err := ss.kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Pod,involvedObject.name=" + name})
	d.EventsErr = describe(err, "list events in namespace "+ns)
	if err == nil {
		d.Events = eventViews(evs.Items, 50, now)
	}
	pg := s.base(ss, "Pod "+ns+"/"+name)
	pg.Message = r.URL.Query().Get("msg")
	pg.Refresh, pg.Data = "/pod?ns="+url.QueryEscape(ns)+"&name="+url.QueryEscape(name)+"&fragment=1", d
	s.render(w, r, http.StatusOK, "pod", pg)
}

// logs streams a container's log as plain text while the browser reads it.
func (s *Server) logs(w http.ResponseWriter, r *http.Request, ss *session) {
	ns, err := namespaceParam(r, "default")
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	q := r.URL.Query()
	name, ctr := q.Get("name"), q.Get("container")
	if len(validation.IsDNS1123Subdomain(name)) > 0 || (ctr != "" && len(validation.IsDNS1123Label(ctr)) > 0) {
		http.Error(w, "invalid pod or container name", http.StatusBadRequest)
		return
	}
	tail := int64(500)
	opts := &corev1.PodLogOptions{Container: ctr, Follow: q.Get("follow") == "1", TailLines: &tail}
	rc, err := ss.kube.CoreV1().Pods(ns).GetLogs(name, opts).Stream(r.Context())
	if err != nil {
		http.Error(w, describe(err, "read the logs of pod "+ns+"/"+name), statusOf(err))
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Accel-Buffering", "no")
	fl := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := rc.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			_ = fl.Flush()
		}
		if err != nil {
			return
		}
	}
}

// act is one action a form asks for, read from a request's form values.
type act struct {
	Action, Kind, Namespace, Name string
	Replicas                      int32
}

var scalable = map[string]bool{"Deployment": true, "StatefulSet": true}
var restartable = map[string]bool{"Deployment": true, "StatefulSet": true, "DaemonSet": true}

func parseAct(get func(string) string) (act, error) {
	a := act{Action: get("action"), Kind: get("kind"), Namespace: get("ns"), Name: get("name")}
	if errs := validation.IsDNS1123Label(a.Namespace); len(errs) > 0 {
		return a, fmt.Errorf("namespace %q is not valid: %s", a.Namespace, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(a.Name); len(errs) > 0 {
		return a, fmt.Errorf("name %q is not valid: %s", a.Name, strings.Join(errs, "; "))
	}
	switch a.Action {
	case "scale":
		if !scalable[a.Kind] {
			return a, fmt.Errorf("cannot scale a %q: only Deployments and StatefulSets", a.Kind)
		}
		n, err := strconv.Atoi(get("replicas"))
		if err != nil || n < 0 || n > 1000 {
			return a, fmt.Errorf("replicas %q: want a whole number from 0 to 1000", get("replicas"))
		}
		a.Replicas = int32(n)
	case "restart":
		if !restartable[a.Kind] {
			return a, fmt.Errorf("cannot restart a %q: only Deployments, StatefulSets and DaemonSets", a.Kind)
		}
	case "delete":
		if a.Kind != "Pod" {
			return a, fmt.Errorf("cannot delete a %q here: only Pods", a.Kind)
		}
	default:
		return a, fmt.Errorf("unknown action %q: want scale, restart or delete", a.Action)
	}
	return a, nil
}

// Describe is the sentence the confirmation asks about.
func (a act) Describe() string {
	switch a.Action {
	case "scale":
		return fmt.Sprintf("Scale %s %s/%s to %d replicas?", a.Kind, a.Namespace, a.Name, a.Replicas)
	case "restart":
		return fmt.Sprintf("Restart the rollout of %s %s/%s (all its Pods are replaced)?", a.Kind, a.Namespace, a.Name)
	}
	return fmt.Sprintf("Delete Pod %s/%s?", a.Namespace, a.Name)
}

func (s *Server) confirm(w http.ResponseWriter, r *http.Request, ss *session) {
	a, err := parseAct(r.URL.Query().Get)
	if err != nil {
		s.message(w, ss, http.StatusBadRequest, err.Error())
		return
	}
	p := s.base(ss, "Confirm")
	p.Data = a
	s.render(w, nil, http.StatusOK, "confirm", p)
}

func (s *Server) action(w http.ResponseWriter, r *http.Request, ss *session) {
	a, err := parseAct(r.PostFormValue)
	if err != nil {
		s.message(w, ss, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	what, done := "", ""
	switch a.Action {
	case "scale":
		what = fmt.Sprintf("scale %s %s/%s", strings.ToLower(a.Kind)+"s", a.Namespace, a.Name)
		sc := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: a.Name, Namespace: a.Namespace}, Spec: autoscalingv1.ScaleSpec{Replicas: a.Replicas}}
		if a.Kind == "Deployment" {
			_, err = ss.kube.AppsV1().Deployments(a.Namespace).UpdateScale(ctx, a.Name, sc, metav1.UpdateOptions{})
		} else {
			_, err = ss.kube.AppsV1().StatefulSets(a.Namespace).UpdateScale(ctx, a.Name, sc, metav1.UpdateOptions{})
		}
		done = fmt.Sprintf("%s %s scaled to %d", a.Kind, a.Name, a.Replicas)
	case "restart":
		what = fmt.Sprintf("patch %s %s/%s", strings.ToLower(a.Kind)+"s", a.Namespace, a.Name)
		// The same annotation `kubectl rollout restart` sets.
		patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, s.now().UTC().Format(time.RFC3339))
		switch a.Kind {
		case "Deployment":
			_, err = ss.kube.AppsV1().Deployments(a.Namespace).Patch(ctx, a.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
		case "StatefulSet":
			_, err = ss.kube.AppsV1().StatefulSets(a.Namespace).Patch(ctx, a.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
		default:
			_, err = ss.kube.AppsV1().DaemonSets(a.Namespace).Patch(ctx, a.Name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
		}
		done = fmt.Sprintf("%s %s restarted", a.Kind, a.Name)
	case "delete":
		what = fmt.Sprintf("delete pod %s/%s", a.Namespace, a.Name)
		err = ss.kube.CoreV1().Pods(a.Namespace).Delete(ctx, a.Name, metav1.DeleteOptions{})
		done = "Pod " + a.Name + " deleted"
	}
	if err != nil {
		s.message(w, ss, statusOf(err), describe(err, what))
		return
	}
	s.cfg.Logger.Printf("%s: %s", ss.user, done)
	http.Redirect(w, r, "/workloads?ns="+url.QueryEscape(a.Namespace)+"&msg="+url.QueryEscape(done), http.StatusSeeOther)
}

// ErrNoAPIServer is returned by InClusterAPIServer outside a Pod.
var ErrNoAPIServer = errors.New("KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are not set: pass --api-server")

// InClusterAPIServer is the API server's URL as a Pod sees it.
func InClusterAPIServer(getenv func(string) string) (string, error) {
	h, p := getenv("KUBERNETES_SERVICE_HOST"), getenv("KUBERNETES_SERVICE_PORT")
	if h == "" || p == "" {
		return "", ErrNoAPIServer
	}
	return "https://" + net.JoinHostPort(h, p), nil
}
