package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/k1s-io/k1s/tests/harness"
)

// TestSecurityArgsMerge: a server started with
// --kube-apiserver-arg=enable-admission-plugins=PodSecurity and
// --kube-apiserver-arg=authorization-mode=RBAC still runs the Node
// authorizer (its own kubelet, which RBAC alone grants nothing, registers
// its Node and turns it Ready; its credentials may not read another Node)
// and NodeRestriction (they may neither update another Node nor create one
// of another name), and k1s logs what the two flags became.
func TestSecurityArgsMerge(t *testing.T) {
	const nodeName, other = "k1s-authz-node", "k1s-authz-other"
	s := newNodeServer(t, "--node-name", nodeName, "--disable=coredns,servicelb,ingress",
		"--kube-apiserver-arg=enable-admission-plugins=PodSecurity",
		"--kube-apiserver-arg=authorization-mode=RBAC")
	startExisting(t, s) // waits for /readyz
	for _, want := range []string{
		"kube-apiserver --enable-admission-plugins=PodSecurity,NodeRestriction (k1s added NodeRestriction",
		"kube-apiserver --authorization-mode=Node,RBAC (k1s added Node",
	} {
		if !strings.Contains(s.Log(), want) {
			t.Errorf("log lacks %q", want)
		}
	}

	eventually(t, 2*time.Minute, "own Node Ready (its kubelet authorized by the Node authorizer)", func() error {
		out, err := s.Kubectl("get", "node", nodeName, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil {
			return err
		}
		if out != "True" {
			return fmt.Errorf("Ready=%q", out)
		}
		return nil
	})

	apply(t, s, "apiVersion: v1\nkind: Node\nmetadata: {name: "+other+"}\n")
	kubelet := filepath.Join(s.DataDir, "agent", "pki", "kubelet.kubeconfig")
	if _, err := os.Stat(kubelet); err != nil {
		t.Fatalf("the node's kubelet credentials: %v", err)
	}
	// kubectl label reads the Node first: the Node authorizer refuses that.
	out, err := harness.Kubectl(kubelet, "label", "node", other, "k1s-test/owned=yes")
	if want := fmt.Sprintf("node '%s' cannot read '%s', only its own Node object", nodeName, other); err == nil {
		t.Errorf("the kubelet of %s labelled Node %s:\n%s", nodeName, other, out)
	} else if !strings.Contains(out, want) {
		t.Errorf("labelling another Node: want the Node authorizer's refusal %q, got:\n%s", want, out)
	}
	// A bare update (no read first) gets past the authorizer to NodeRestriction.
	refusal := fmt.Sprintf("node %q is not allowed to modify node %q", nodeName, other)
	update := filepath.Join(s.Dir, "other-node.json")
	if err := os.WriteFile(update, []byte(`{"apiVersion":"v1","kind":"Node","metadata":{"name":"`+other+`","labels":{"k1s-test/owned":"yes"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = harness.Kubectl(kubelet, "replace", "--raw", "/api/v1/nodes/"+other, "-f", update)
	if err == nil {
		t.Errorf("the kubelet of %s updated Node %s:\n%s", nodeName, other, out)
	} else if !strings.Contains(out, refusal) {
		t.Errorf("updating another Node: want NodeRestriction's refusal %q, got:\n%s", refusal, out)
	}
	if got, err := s.Kubectl("get", "node", other, "-o", "jsonpath={.metadata.labels.k1s-test/owned}"); err != nil || got != "" {
		t.Errorf("Node %s: label %q (%v), want none", other, got, err)
	}

	rogue := filepath.Join(s.Dir, "rogue-node.yaml")
	if err := os.WriteFile(rogue, []byte("apiVersion: v1\nkind: Node\nmetadata: {name: k1s-authz-rogue}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = harness.Kubectl(kubelet, "create", "-f", rogue)
	refusal = fmt.Sprintf("node %q is not allowed to modify node %q", nodeName, "k1s-authz-rogue")
	if err == nil {
		t.Errorf("the kubelet of %s created Node k1s-authz-rogue:\n%s", nodeName, out)
	} else if !strings.Contains(out, refusal) {
		t.Errorf("creating a Node of another name: want NodeRestriction's refusal %q, got:\n%s", refusal, out)
	}
	if out, err := s.Kubectl("get", "node", "k1s-authz-rogue"); err == nil {
		t.Errorf("Node k1s-authz-rogue exists:\n%s", out)
	}
}
