package helmctl

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/cli"
)

// A chart from a repository: the index is read and the archive fetched
// from a real HTTP server, as from any chart repository.
func TestLoadChartFromRepo(t *testing.T) {
	tgz := chartTgz(t, map[string]string{
		"Chart.yaml":        "apiVersion: v2\nname: demo\nversion: 0.2.0\n",
		"templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
	})
	index := `apiVersion: v1
entries:
  demo:
    - apiVersion: v2
      name: demo
      version: 0.2.0
      urls: [charts/demo-0.2.0.tgz]
generated: "2026-12-01T00:00:00Z"
`
	var fetched []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched = append(fetched, r.URL.Path)
		switch r.URL.Path {
		case "/index.yaml":
			_, _ = w.Write([]byte(index))
		case "/charts/demo-0.2.0.tgz":
			_, _ = w.Write(tgz)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	dir := t.TempDir()
	for _, env := range []string{"HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"} {
		t.Setenv(env, dir+"/"+env)
	}
	c := &controller{settings: cli.New()}

	ch, err := c.loadChart(&Chart{Spec: Spec{Chart: "demo", Repo: srv.URL, Version: "0.2.0"}})
	if err != nil {
		t.Fatalf("load from repo: %v (requests %v)", err, fetched)
	}
	if ch.Metadata.Name != "demo" || ch.Metadata.Version != "0.2.0" || len(ch.Templates) != 1 {
		t.Errorf("chart %+v, %d templates", ch.Metadata, len(ch.Templates))
	}
	if strings.Join(fetched, " ") != "/index.yaml /charts/demo-0.2.0.tgz" {
		t.Errorf("requests %v", fetched)
	}

	_, err = c.loadChart(&Chart{Spec: Spec{Chart: "demo", Repo: srv.URL, Version: "9.9.9"}})
	if err == nil || !strings.Contains(err.Error(), `fetch chart "demo"`) || !strings.Contains(err.Error(), "9.9.9") {
		t.Errorf("missing version: %v", err)
	}
}
