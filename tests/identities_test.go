package tests

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/k1s-io/k1s/tests/harness"
)

// identity is one client identity k1s issues and how the test acts as it.
type identity struct {
	name       string   // as docs/security.md heads its section
	kubeconfig string   // its own credentials, or the admin's with impersonation flags
	flags      []string // extra kubectl flags
}

// identitiesMatchDocs runs `kubectl auth can-i --list` as every identity
// k1s issues and requires the result to be what docs/security.md says
// ("What each identity may do"). It also checks, independently of the
// document, the properties the threat model rests on.
func identitiesMatchDocs(t *testing.T, s, a *harness.Server, agentNode string) {
	serverPKI := filepath.Join(s.DataDir, "server", "tls")
	empty := filepath.Join(t.TempDir(), "empty.kubeconfig")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	certFlags := func(dir, name string) []string {
		return []string{"--server", "https://" + s.Addr(), "--certificate-authority", filepath.Join(serverPKI, "server-ca.crt"),
			"--client-certificate", filepath.Join(dir, name+".crt"), "--client-key", filepath.Join(dir, name+".key")}
	}
	cred := filepath.Join(s.DataDir, "server", "cred")
	agentPKI := filepath.Join(a.DataDir, "agent", "pki")
	ids := []identity{
		{name: "system:admin", kubeconfig: filepath.Join(cred, "admin.kubeconfig")},
		{name: "system:kube-scheduler", kubeconfig: filepath.Join(cred, "scheduler.kubeconfig")},
		{name: "system:kube-controller-manager", kubeconfig: filepath.Join(cred, "controller-manager.kubeconfig")},
		{name: "kube-apiserver", kubeconfig: empty, flags: certFlags(serverPKI, "client-kube-apiserver")},
		{name: "system:node:<node>", kubeconfig: filepath.Join(agentPKI, "kubelet.kubeconfig"), flags: viaServer(s)},
		{name: "system:kube-proxy", kubeconfig: filepath.Join(agentPKI, "kube-proxy.kubeconfig"), flags: viaServer(s)},
		{name: "system:k1s-flannel:<node>", kubeconfig: filepath.Join(agentPKI, "flannel.kubeconfig"), flags: viaServer(s)},
		{name: "system:k1s-network-policy:<node>", kubeconfig: filepath.Join(agentPKI, "network-policy.kubeconfig"), flags: viaServer(s)},
		{name: "system:serviceaccount:kube-system:coredns", kubeconfig: s.Kubeconfig,
			flags: []string{"--as=system:serviceaccount:kube-system:coredns", "--as-group=system:serviceaccounts", "--as-group=system:serviceaccounts:kube-system", "--as-group=system:authenticated"}},
		{name: "system:serviceaccount:kube-system:k1s-ingress", kubeconfig: s.Kubeconfig,
			flags: []string{"--as=system:serviceaccount:kube-system:k1s-ingress", "--as-group=system:serviceaccounts", "--as-group=system:serviceaccounts:kube-system", "--as-group=system:authenticated"}},
		{name: "system:serviceaccount:kube-system:metrics-server", kubeconfig: s.Kubeconfig,
			flags: []string{"--as=system:serviceaccount:kube-system:metrics-server", "--as-group=system:serviceaccounts", "--as-group=system:serviceaccounts:kube-system", "--as-group=system:authenticated"}},
		{name: "system:serviceaccount:kube-system:k1s-helm-controller", kubeconfig: s.Kubeconfig,
			flags: []string{"--as=system:serviceaccount:kube-system:k1s-helm-controller", "--as-group=system:serviceaccounts", "--as-group=system:serviceaccounts:kube-system", "--as-group=system:authenticated"}},
		// The local-path provisioner: the server impersonates this user.
		{name: "system:k1s:local-path", kubeconfig: s.Kubeconfig,
			flags: []string{"--as=system:k1s:local-path", "--as-group=system:authenticated"}},
	}
	canI := func(id identity) ([]string, error) {
		args := append(append([]string{}, id.flags...), "auth", "can-i", "--list", "--namespace", "kube-system")
		if s.Host != "" && id.kubeconfig == s.Kubeconfig {
			args = append([]string{"--server", "https://" + s.Addr()}, args...)
		}
		out, err := harness.Kubectl(id.kubeconfig, args...)
		if err != nil {
			return nil, err
		}
		return canIRules(out, agentNode), nil
	}
	// What every authenticated client may do (discovery, health, its own
	// reviews) is listed once, and left out of each identity's list.
	everyone := identity{name: "system:authenticated", kubeconfig: s.Kubeconfig,
		flags: []string{"--as=k1s-test:nobody", "--as-group=system:authenticated"}}
	base, err := canI(everyone)
	if err != nil {
		t.Fatal(err)
	}
	doc := docIdentities(t)
	var report strings.Builder
	got := map[string][]string{}
	for _, id := range append([]identity{everyone}, ids...) {
		rules, err := canI(id)
		if err != nil {
			t.Errorf("%s: %v", id.name, err)
			continue
		}
		if id.name != everyone.name {
			rules = slices.DeleteFunc(rules, func(r string) bool { return slices.Contains(base, r) })
		}
		got[id.name] = rules
		want, ok := doc[id.name]
		switch {
		case !ok:
			t.Errorf("docs/security.md has no section for identity %s", id.name)
		case !slices.Equal(rules, want):
			t.Errorf("docs/security.md is not what %s may do", id.name)
		default:
			continue
		}
		fmt.Fprintf(&report, "\n### `%s`\n```\n%s\n```\n", id.name, strings.Join(rules, "\n"))
	}
	ids = append(ids, everyone)
	for name := range doc {
		if !slices.ContainsFunc(ids, func(id identity) bool { return id.name == name }) {
			t.Errorf("docs/security.md lists identity %s, which the test does not know", name)
		}
	}
	if report.Len() > 0 {
		t.Logf("what the cluster says, for the sections that differ:\n%s", report.String())
	}

	// Independent of the document: only the admin may do anything to
	// anything, and no node identity (nor CoreDNS) may write Nodes other
	// than its own or read Secrets.
	for name, rules := range got {
		for _, r := range rules {
			res, _, _, verbs, ok := splitRule(r)
			// Charts install anything: the helm-controller is cluster-admin by design.
			if ok && name != "system:admin" && name != "system:serviceaccount:kube-system:k1s-helm-controller" && res == "*.*" && slices.Contains(verbs, "*") {
				t.Errorf("%s may do anything: %s", name, r)
			}
		}
	}
	// The front-proxy client certificate is for aggregated API servers: the
	// apiserver does not take it as a client identity of its own.
	if out, err := harness.Kubectl(empty, append(certFlags(serverPKI, "client-auth-proxy"), "get", "--raw", "/api")...); err == nil || !strings.Contains(out, "Unauthorized") {
		t.Errorf("the front-proxy client certificate authenticates to the apiserver: %v %s", err, out)
	}
	if !slices.Contains(got["system:admin"], "*.* [] [] [*]") {
		t.Errorf("the admin has no wildcard rule: %v", got["system:admin"])
	}
	for _, name := range []string{"system:node:<node>", "system:kube-proxy", "system:k1s-flannel:<node>", "system:serviceaccount:kube-system:coredns"} {
		if _, ok := got[name]; !ok {
			t.Errorf("no rules of %s to check", name)
		}
		for _, r := range got[name] {
			res, _, names, verbs, ok := splitRule(r)
			if !ok {
				continue
			}
			writes := slices.ContainsFunc(verbs, func(v string) bool { return v != "get" && v != "list" && v != "watch" })
			if (res == "nodes" || res == "nodes/status" || res == "*.*") && writes && names != "[<node>]" {
				t.Errorf("%s may write Nodes other than its own: %s", name, r)
			}
			if res == "secrets" || res == "*.*" {
				t.Errorf("%s may read Secrets: %s", name, r)
			}
		}
	}
}

var ruleLine = regexp.MustCompile(`^(\S+) (\[[^\]]*\]) (\[[^\]]*\]) \[([^\]]*)\]$`)

// splitRule splits a normalised can-i rule into resource, non-resource
// URLs, resource names (bracketed) and verbs.
func splitRule(r string) (res, urls, names string, verbs []string, ok bool) {
	m := ruleLine.FindStringSubmatch(r)
	if m == nil {
		return "", "", "", nil, false
	}
	return m[1], m[2], m[3], strings.Fields(m[4]), true
}

// sortVerbs puts a rule's verbs in order: kubectl merges the verbs of
// several roles in no fixed order, so the same rights may print as
// [get list watch patch update] in one run and [get list patch update watch]
// in the next.
func sortVerbs(rule string) string {
	m := ruleLine.FindStringSubmatch(rule)
	if m == nil {
		return rule
	}
	verbs := strings.Fields(m[4])
	slices.Sort(verbs)
	return m[1] + " " + m[2] + " " + m[3] + " [" + strings.Join(verbs, " ") + "]"
}

// canIRules turns `kubectl auth can-i --list` output into one normalised
// line per rule ("resource non-resource-urls resource-names verbs"), with
// the node's name replaced by <node>, sorted.
func canIRules(out, node string) []string {
	var rules []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] == "Resources" {
			continue // the header
		}
		if strings.HasPrefix(f[0], "[") { // no resource: a non-resource URL rule
			f = append([]string{"-"}, f...)
		}
		l := strings.Join(f, " ")
		l = strings.ReplaceAll(l, node, "<node>")
		rules = append(rules, sortVerbs(l))
	}
	slices.Sort(rules)
	return slices.Compact(rules)
}

var docHeading = regexp.MustCompile("^### `([^`]+)`")

// docIdentities reads the code block after each "### `identity`" heading
// of docs/security.md's section "What each identity may do".
func docIdentities(t *testing.T) map[string][]string {
	path := filepath.Join(filepath.Dir(filepath.Dir(harness.Bin())), "docs", "security.md")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	in, block := false, false
	var name string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			in = line == "## What each identity may do"
			continue
		}
		if !in {
			continue
		}
		if m := docHeading.FindStringSubmatch(line); m != nil {
			name = m[1]
			continue
		}
		if strings.HasPrefix(line, "```") {
			if block {
				slices.Sort(out[name])
				out[name] = slices.Compact(out[name])
			}
			block = !block
			if block {
				out[name] = []string{}
			}
			continue
		}
		if block && strings.TrimSpace(line) != "" {
			out[name] = append(out[name], sortVerbs(strings.Join(strings.Fields(line), " ")))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Errorf("%s has no identities under \"## What each identity may do\"", path)
	}
	return out
}
