package etcd

import (
	"errors"
	"os"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/k1s-io/k1s/internal/config"
)

func member(id uint64, name, peer string, learner bool) *etcdserverpb.Member {
	return &etcdserverpb.Member{ID: id, Name: name, PeerURLs: []string{peer}, IsLearner: learner}
}

const (
	p1 = "https://10.0.0.1:2380"
	p2 = "https://10.0.0.2:2380"
	p3 = "https://10.0.0.3:2380"
)

func TestPlanRemoval(t *testing.T) {
	three := []*etcdserverpb.Member{member(1, "a", p1, false), member(2, "b", p2, false), member(3, "c", p3, false)}
	for _, tc := range []struct {
		name    string
		members []*etcdserverpb.Member
		peer    string
		self    uint64
		want    RemovalAction
		id      uint64
		reason  []string
	}{
		{"one of three, by another member", three, p3, 1, RemoveMember, 3, nil},
		{"one of three, by --remove-member", three, p2, 0, RemoveMember, 2, nil},
		{"own member is left to the others", three, p1, 1, RemovalElsewhere, 1, nil},
		{"no member has the peer URL", three, "https://10.0.0.9:2380", 1, RemovalDone, 0, nil},
		{"removed already", three[:2], p3, 1, RemovalDone, 0, nil},
		{"one of two leaves one", three[:2], p2, 1, RemoveMember, 2, nil},
		{"last voting member", three[:1], p1, 0, RemovalRefused, 1, []string{"last voting member", "a (1)"}},
		{"last voter with a learner", []*etcdserverpb.Member{member(1, "a", p1, false), member(4, "d", p2, true)}, p1, 0, RemovalRefused, 1, []string{"last voting member"}},
		{"a learner goes", []*etcdserverpb.Member{member(1, "a", p1, false), member(4, "", p2, true)}, p2, 1, RemoveMember, 4, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := PlanRemoval(tc.members, tc.peer, tc.self)
			if got.Action != tc.want || got.ID != tc.id {
				t.Fatalf("PlanRemoval = %+v, want action %d ID %d", got, tc.want, tc.id)
			}
			for _, w := range tc.reason {
				if !strings.Contains(got.Reason, w) {
					t.Errorf("reason %q does not say %q", got.Reason, w)
				}
			}
			if got.Action != RemovalRefused && got.Reason != "" {
				t.Errorf("reason %q without a refusal", got.Reason)
			}
			if got.Action != RemovalDone && got.Name == "" {
				t.Error("no name for the member")
			}
		})
	}
}

// A removed member's data dir says so, and the error names the member,
// its data and the way back.
func TestRemovedMarker(t *testing.T) {
	cfg := &config.Server{DataDir: t.TempDir(), AdvertiseAddress: "10.0.0.3", HTTPSPort: 6443}
	if _, removed := WasRemoved(cfg); removed {
		t.Fatal("a fresh data dir was removed")
	}
	if err := os.MkdirAll(cfg.EtcdDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(removedMarker(cfg), []byte("c0ffee 2026-12-02T13:00:00Z\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	id, removed := WasRemoved(cfg)
	if !removed || id != 0xc0ffee {
		t.Fatalf("WasRemoved = %x %v", id, removed)
	}
	err := RemovedError(cfg, id)
	if !errors.Is(err, ErrRemoved) {
		t.Errorf("%v is not ErrRemoved", err)
	}
	for _, want := range []string{"-10.0.0.3 (c0ffee) was removed from the cluster", cfg.EtcdDir(), "k1s server --remove-member", "--server https://<another server>:6443"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
}
