package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var testVars = map[string]string{
	"CLUSTER_DNS":             "10.43.0.10",
	"CLUSTER_DOMAIN":          "cluster.local",
	"SYSTEM_DEFAULT_REGISTRY": "",
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestStageSubstitutesAndWrites(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "server", "manifests")
	builtin := map[string][]byte{
		"coredns": []byte("clusterIP: %{CLUSTER_DNS}%\ndomain: %{CLUSTER_DOMAIN}%\nimage: %{SYSTEM_DEFAULT_REGISTRY}%coredns/coredns\nagain: %{CLUSTER_DNS}%\n"),
		"traefik": []byte("kind: ConfigMap\n"),
	}
	changes, err := Stage(dir, builtin, testVars, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := "clusterIP: 10.43.0.10\ndomain: cluster.local\nimage: coredns/coredns\nagain: 10.43.0.10\n"
	if got := readFile(t, filepath.Join(dir, "coredns.yaml")); got != want {
		t.Errorf("coredns.yaml = %q, want %q", got, want)
	}
	if got := readFile(t, filepath.Join(dir, "traefik.yaml")); got != "kind: ConfigMap\n" {
		t.Errorf("traefik.yaml = %q", got)
	}
	if len(changes) != 2 || changes[0].Name != "coredns" || changes[0].Action != Created ||
		changes[1].Name != "traefik" || changes[1].Action != Created ||
		changes[0].Path != filepath.Join(dir, "coredns.yaml") {
		t.Errorf("changes = %+v", changes)
	}
	st, err := os.Stat(filepath.Join(dir, "coredns.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("file mode = %v, want 0600", st.Mode().Perm())
	}
	dst, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if dst.Mode().Perm() != 0o700 {
		t.Errorf("dir mode = %v, want 0700", dst.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("dir holds %v, want only the two add-ons (no temp files)", names)
	}
}

func TestStageUnknownPlaceholder(t *testing.T) {
	dir := t.TempDir()
	builtin := map[string][]byte{
		"broken":  []byte("a: %{CLUSTER_DNS}%\nb: %{NO_SUCH_VAR}%\nc: %{no such}%\n"),
		"coredns": []byte("ip: %{CLUSTER_DNS}%\n"),
	}
	changes, err := Stage(dir, builtin, testVars, nil)
	if err == nil {
		t.Fatal("Stage succeeded with an unknown placeholder")
	}
	if !strings.Contains(err.Error(), "broken") || !strings.Contains(err.Error(), "%{NO_SUCH_VAR}%") {
		t.Errorf("error %q does not name the add-on and the placeholder", err)
	}
	if strings.Contains(err.Error(), "CLUSTER_DNS") {
		t.Errorf("error %q names a known placeholder", err)
	}
	if _, statErr := os.Stat(filepath.Join(dir, "broken.yaml")); !os.IsNotExist(statErr) {
		t.Errorf("broken.yaml was written (stat: %v)", statErr)
	}
	// The good add-on is still staged.
	if got := readFile(t, filepath.Join(dir, "coredns.yaml")); got != "ip: 10.43.0.10\n" {
		t.Errorf("coredns.yaml = %q", got)
	}
	if len(changes) != 1 || changes[0].Name != "coredns" {
		t.Errorf("changes = %+v", changes)
	}
}

func TestRenderLeavesTextWithoutPlaceholdersAlone(t *testing.T) {
	in := "a: 100%\nb: '%{'\nc: \"}%\"\nd: %{CLUSTER_DOMAIN}%\n"
	out, err := Render("x", []byte(in), testVars)
	if err != nil {
		t.Fatal(err)
	}
	want := "a: 100%\nb: '%{'\nc: \"}%\"\nd: cluster.local\n"
	if string(out) != want {
		t.Errorf("Render = %q, want %q", out, want)
	}
}

func TestStageDisabledRemovedAndUserFilesUntouched(t *testing.T) {
	dir := t.TempDir()
	builtin := map[string][]byte{
		"coredns": []byte("dns\n"),
		"traefik": []byte("ingress\n"),
	}
	if _, err := Stage(dir, builtin, testVars, nil); err != nil {
		t.Fatal(err)
	}
	userFiles := map[string]string{
		"myapp.yaml":       "mine\n",
		"traefik.yml":      "a user's own traefik, under another extension\n",
		"coredns.yaml.bak": "backup\n",
	}
	for name, content := range userFiles {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// "myapp" is disabled too, but it is not a built-in: its file must stay.
	changes, err := Stage(dir, builtin, testVars, map[string]bool{"traefik": true, "myapp": true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "traefik.yaml")); !os.IsNotExist(err) {
		t.Errorf("disabled traefik.yaml still there (stat: %v)", err)
	}
	if got := readFile(t, filepath.Join(dir, "coredns.yaml")); got != "dns\n" {
		t.Errorf("coredns.yaml = %q", got)
	}
	for name, content := range userFiles {
		p := filepath.Join(dir, name)
		if got := readFile(t, p); got != content {
			t.Errorf("user file %s = %q, want %q", name, got, content)
		}
		st, _ := os.Stat(p)
		if st.Mode().Perm() != 0o644 {
			t.Errorf("user file %s mode changed to %v", name, st.Mode().Perm())
		}
	}
	if len(changes) != 1 || changes[0].Name != "traefik" || changes[0].Action != Removed {
		t.Errorf("changes = %+v, want only traefik removed", changes)
	}
	// Disabled again: nothing left to remove, no change reported.
	changes, err = Stage(dir, builtin, testVars, map[string]bool{"traefik": true})
	if err != nil || len(changes) != 0 {
		t.Errorf("second Stage: changes %+v, err %v", changes, err)
	}
}

func TestStageNoRewriteWhenUnchanged(t *testing.T) {
	dir := t.TempDir()
	builtin := map[string][]byte{"coredns": []byte("ip: %{CLUSTER_DNS}%\n")}
	if _, err := Stage(dir, builtin, testVars, nil); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "coredns.yaml")
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	changes, err := Stage(dir, builtin, testVars, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 0 {
		t.Errorf("unchanged Stage reported %+v", changes)
	}
	st, _ := os.Stat(path)
	if !st.ModTime().Equal(old) {
		t.Errorf("unchanged file was rewritten: mtime %v", st.ModTime())
	}

	// A user's edit is overwritten and reported as an update.
	if err := os.WriteFile(path, []byte("ip: 1.2.3.4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	changes, err = Stage(dir, builtin, testVars, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1 || changes[0].Action != Updated {
		t.Errorf("changes after edit = %+v, want one update", changes)
	}
	if got := readFile(t, path); got != "ip: 10.43.0.10\n" {
		t.Errorf("edited file = %q, want it restored", got)
	}
	st, _ = os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode after rewrite = %v, want 0600", st.Mode().Perm())
	}

	// A new value of a variable rewrites the file.
	vars := map[string]string{"CLUSTER_DNS": "10.0.0.10"}
	changes, err = Stage(dir, builtin, vars, nil)
	if err != nil || len(changes) != 1 || changes[0].Action != Updated {
		t.Errorf("changes after new vars = %+v, err %v", changes, err)
	}
	if got := readFile(t, path); got != "ip: 10.0.0.10\n" {
		t.Errorf("file = %q", got)
	}
}
