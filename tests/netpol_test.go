package tests

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// netpolPods: in namespace np-a, srv3 (httpd on 8080, the named port
// "http", and on 8081) on a3; cli2 (role=client) and any2 (no role) on a2;
// cli3 (role=other) on a3, next to srv3. In np-b (team=friends), friend on
// s1.
const netpolPods = `apiVersion: v1
kind: Namespace
metadata: {name: np-a}
---
apiVersion: v1
kind: Namespace
metadata: {name: np-b, labels: {team: friends}}
---
apiVersion: v1
kind: Pod
metadata: {name: srv3, namespace: np-a, labels: {app: srv}}
spec:
  nodeName: a3
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: ` + netImage + `
    imagePullPolicy: Never
    command: ["sh", "-c", "mkdir -p /www && echo hello from $(hostname) > /www/index.html && httpd -p 8081 -h /www && exec httpd -f -p 8080 -h /www"]
    ports: [{name: http, containerPort: 8080}]
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 2}
---
apiVersion: v1
kind: Pod
metadata: {name: cli2, namespace: np-a, labels: {role: client}}
spec:
  nodeName: a2
  terminationGracePeriodSeconds: 1
  containers: [{name: c, image: ` + netImage + `, imagePullPolicy: Never}]
---
apiVersion: v1
kind: Pod
metadata: {name: any2, namespace: np-a}
spec:
  nodeName: a2
  terminationGracePeriodSeconds: 1
  containers: [{name: c, image: ` + netImage + `, imagePullPolicy: Never}]
---
apiVersion: v1
kind: Pod
metadata: {name: cli3, namespace: np-a, labels: {role: other}}
spec:
  nodeName: a3
  terminationGracePeriodSeconds: 1
  containers: [{name: c, image: ` + netImage + `, imagePullPolicy: Never}]
---
apiVersion: v1
kind: Pod
metadata: {name: friend, namespace: np-b}
spec:
  nodeName: s1
  terminationGracePeriodSeconds: 1
  containers: [{name: c, image: ` + netImage + `, imagePullPolicy: Never}]
`

// TestNetworkPolicy: on one three-node cluster, NetworkPolicies are
// enforced across nodes and on one node: default-deny, allows by Pod
// label, namespace label and ipBlock with except, named ports, egress
// default-deny of DNS and its allow, a Warning event for what k1s cannot
// enforce, traffic back once the policies are gone, and an agent restarted
// with --disable-network-policy without its rules.
func TestNetworkPolicy(t *testing.T) {
	c := startCluster(t, "vxlan")
	s := c.s
	apply(t, s, netpolPods)
	for _, p := range []string{"np-a/srv3", "np-a/cli2", "np-a/any2", "np-a/cli3", "np-b/friend"} {
		ns, name, _ := strings.Cut(p, "/")
		eventually(t, 2*time.Minute, p+" Ready", func() error {
			out, err := s.Kubectl("-n", ns, "get", "pod", name, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
			if err != nil || out != "True" {
				return fmt.Errorf("ready=%q %v", out, err)
			}
			return nil
		})
	}
	ip := func(ns, pod string) string {
		out, err := s.Kubectl("-n", ns, "get", "pod", pod, "-o", "jsonpath={.status.podIP}")
		if err != nil || out == "" {
			t.Fatalf("IP of %s/%s: %q %v", ns, pod, out, err)
		}
		return out
	}
	srv := ip("np-a", "srv3")
	cli3IP := ip("np-a", "cli3")
	url := "http://" + srv + ":8080/"
	url8081 := "http://" + srv + ":8081/"
	want := "hello from srv3"

	// get runs netcheck in a Pod: nil when the body is srv3's greeting.
	get := func(ns, pod, u string) error {
		out, err := s.Kubectl("-n", ns, "exec", pod, "--", "netcheck", "get", u)
		if err != nil {
			return fmt.Errorf("%v: %s", err, strings.TrimSpace(out))
		}
		if strings.TrimSpace(out) != want {
			return fmt.Errorf("body %q", out)
		}
		return nil
	}
	// reaches waits until a request passes; it must within a minute.
	reaches := func(t *testing.T, what, ns, pod, u string) {
		t.Helper()
		eventually(t, time.Minute, what+" passes", func() error { return get(ns, pod, u) })
	}
	// blocked waits until each request fails (netcheck gives up after
	// 5 s), then checks that a second one fails too; the probes run at
	// once, since each blocked one costs its timeout.
	type probe struct{ what, ns, pod, u string }
	blocked := func(t *testing.T, probes ...probe) {
		t.Helper()
		errs := make([]error, len(probes))
		var wg sync.WaitGroup
		for i, p := range probes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				deadline := time.Now().Add(time.Minute)
				for get(p.ns, p.pod, p.u) == nil {
					if time.Now().After(deadline) {
						errs[i] = fmt.Errorf("%s is not blocked within a minute: %s still answers", p.what, p.u)
						return
					}
					time.Sleep(250 * time.Millisecond)
				}
				if get(p.ns, p.pod, p.u) == nil {
					errs[i] = fmt.Errorf("%s: blocked once, then passed", p.what)
				}
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
	}
	lookup := func(pod string) error {
		out, err := s.Kubectl("-n", "np-a", "exec", pod, "--", "netcheck", "lookup", "kubernetes.default.svc.cluster.local")
		if err != nil {
			return fmt.Errorf("%v: %s", err, strings.TrimSpace(out))
		}
		if strings.TrimSpace(out) == "" {
			return fmt.Errorf("no address")
		}
		return nil
	}

	t.Run("open without policies", func(t *testing.T) {
		reaches(t, "a2 → a3", "np-a", "cli2", url)
		reaches(t, "a3 → a3", "np-a", "cli3", url)
		reaches(t, "s1 → a3", "np-b", "friend", url)
		eventually(t, time.Minute, "DNS from cli2", func() error { return lookup("cli2") })
	})

	t.Run("default-deny ingress", func(t *testing.T) {
		apply(t, s, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: np-a}
spec: {podSelector: {}}
`)
		blocked(t,
			probe{"across nodes (a2 → a3)", "np-a", "cli2", url},
			probe{"on one node (a3 → a3)", "np-a", "cli3", url},
			probe{"from another namespace (s1 → a3)", "np-b", "friend", url},
		)
		// Egress is not isolated: cli2 still resolves names.
		if err := lookup("cli2"); err != nil {
			t.Errorf("ingress deny broke DNS: %v", err)
		}
		out, err := c.hosts["a3"].Run(context.Background(), "iptables-save", "-t", "filter")
		if err != nil || !strings.Contains(out, "-j K1S-NP-FORWARD") || !strings.Contains(out, "np-a/srv3 ingress not allowed") {
			t.Errorf("a3's rules lack the hook or srv3's chain: %v\n%s", err, out)
		}
	})

	t.Run("allow by pod label on a named port", func(t *testing.T) {
		apply(t, s, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-client, namespace: np-a}
spec:
  podSelector: {matchLabels: {app: srv}}
  ingress: [{from: [{podSelector: {matchLabels: {role: client}}}], ports: [{port: http}]}]
`)
		reaches(t, "role=client on a2 → srv3:http", "np-a", "cli2", url)
		blocked(t,
			probe{"role=client on a2 → srv3:8081 (not the named port)", "np-a", "cli2", url8081},
			probe{"role=other on a3 → srv3", "np-a", "cli3", url},
			probe{"no role on a2 → srv3", "np-a", "any2", url},
		)
	})

	t.Run("allow by namespace label", func(t *testing.T) {
		apply(t, s, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-friends, namespace: np-a}
spec:
  podSelector: {matchLabels: {app: srv}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: friends}}}]}]
`)
		reaches(t, "np-b on s1 → srv3", "np-b", "friend", url)
		reaches(t, "np-b on s1 → srv3:8081 (all ports)", "np-b", "friend", url8081)
		blocked(t, probe{"role=other on a3 → srv3", "np-a", "cli3", url})
	})

	t.Run("ipBlock with except", func(t *testing.T) {
		apply(t, s, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-block, namespace: np-a}
spec:
  podSelector: {matchLabels: {app: srv}}
  ingress: [{from: [{ipBlock: {cidr: 10.42.0.0/16, except: [`+cli3IP+`/32]}}]}]
`)
		reaches(t, "any2 (in the block) → srv3", "np-a", "any2", url8081)
		blocked(t, probe{"cli3 (the except) → srv3", "np-a", "cli3", url})
	})

	t.Run("egress default-deny blocks DNS unless allowed", func(t *testing.T) {
		apply(t, s, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: np-a}
spec: {podSelector: {matchLabels: {role: client}}, policyTypes: [Egress]}
`)
		eventually(t, time.Minute, "DNS from cli2 fails", func() error {
			if lookup("cli2") == nil {
				return fmt.Errorf("cli2 still resolves names")
			}
			return nil
		})
		blocked(t, probe{"cli2 → srv3 (egress denied)", "np-a", "cli2", url})
		if err := lookup("any2"); err != nil {
			t.Errorf("any2 is not selected, but its DNS fails: %v", err)
		}
		apply(t, s, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-dns, namespace: np-a}
spec:
  podSelector: {matchLabels: {role: client}}
  policyTypes: [Egress]
  egress: [{ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]}]
`)
		eventually(t, time.Minute, "DNS from cli2 with UDP/TCP 53 allowed", func() error { return lookup("cli2") })
		blocked(t, probe{"cli2 → srv3 (only DNS allowed)", "np-a", "cli2", url})
	})

	t.Run("a policy k1s cannot enforce gets a Warning event", func(t *testing.T) {
		apply(t, s, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: v6, namespace: np-a}
spec:
  podSelector: {matchLabels: {app: srv}}
  ingress: [{from: [{ipBlock: {cidr: "fd00::/8"}}]}]
`)
		eventually(t, time.Minute, "Warning event on np-a/v6", func() error {
			out, err := s.Kubectl("-n", "np-a", "get", "events", "--field-selector", "involvedObject.name=v6,type=Warning",
				"-o", "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}")
			if err != nil || !strings.Contains(out, "PolicyNotEnforced: ipBlock fd00::/8 is IPv6") {
				return fmt.Errorf("events %q %v", out, err)
			}
			return nil
		})
		// The rest is still enforced.
		blocked(t, probe{"role=other on a3 → srv3", "np-a", "cli3", url})
	})

	t.Run("removing the policies restores traffic", func(t *testing.T) {
		if out, err := s.Kubectl("-n", "np-a", "delete", "networkpolicy", "--all"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		reaches(t, "a3 → a3", "np-a", "cli3", url)
		reaches(t, "a2 → a3", "np-a", "cli2", url)
		eventually(t, time.Minute, "DNS from cli2", func() error { return lookup("cli2") })
		out, err := c.hosts["a3"].Run(context.Background(), "iptables-save", "-t", "filter")
		if err != nil || strings.Contains(out, ":K1S-NP-I-") || strings.Contains(out, ":K1S-NP-E-") {
			t.Errorf("Pod chains left on a3 after the policies went: %v\n%s", err, out)
		}
	})

	t.Run("--disable-network-policy on a restart removes the rules", func(t *testing.T) {
		apply(t, s, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: np-a}
spec: {podSelector: {}}
`)
		blocked(t, probe{"a2 → a3 under default-deny", "np-a", "cli2", url})
		a3 := c.agents["a3"]
		if err := a3.Stop(30 * time.Second); err != nil {
			t.Fatal(err)
		}
		a3.Args = append(a3.Args, "--disable-network-policy")
		if err := a3.Start(); err != nil {
			t.Fatal(err)
		}
		if err := a3.WaitLog("k1s agent is ready", 2*time.Minute); err != nil {
			t.Fatal(err)
		}
		mustContain(t, a3.Log(), "--disable-network-policy: removed", "a3's log")
		out, err := c.hosts["a3"].Run(context.Background(), "iptables-save", "-t", "filter")
		if err != nil || strings.Contains(out, "K1S-NP-") {
			t.Errorf("a3 keeps policy rules with --disable-network-policy: %v\n%s", err, out)
		}
		// srv3's ingress was enforced only on a3: the policy stays, the traffic passes.
		reaches(t, "a2 → a3 with a3's enforcement off", "np-a", "cli2", url)
	})
}
