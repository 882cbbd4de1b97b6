package etcd

import (
	"fmt"
	"slices"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

// What marks a server's own Node (on embedded etcd, with its node) so that
// deleting the Node removes the server's etcd member: the member's name and
// peer URL as annotations, and a finalizer that keeps the Node until a
// server has removed the member (so a deletion made while no server
// watches is not missed).
const (
	NodeMemberNameAnnotation = "etcd.k1s.io/member-name"
	NodePeerURLAnnotation    = "etcd.k1s.io/peer-url"
	NodeFinalizer            = "etcd.k1s.io/member"
)

// RemovalAction is what to do about one member that should go.
type RemovalAction int

const (
	// RemoveMember: remove Removal.ID (etcd's own reconfiguration check
	// then refuses a removal that would cost the others their quorum).
	RemoveMember RemovalAction = iota
	// RemovalDone: no member has the peer URL (removed already, or never
	// joined): nothing left to do.
	RemovalDone
	// RemovalRefused: the member must stay (Removal.Reason says why).
	RemovalRefused
	// RemovalElsewhere: the member is the one deciding; another server's
	// member removes it, so that the removal does not stop the member
	// that has yet to report it.
	RemovalElsewhere
)

// Removal is the decision of PlanRemoval.
type Removal struct {
	Action RemovalAction
	ID     uint64 // the member, for RemoveMember, RemovalRefused and RemovalElsewhere
	Name   string
	Reason string // for RemovalRefused
}

// PlanRemoval decides what to do to remove the member with peer URL
// peerURL from members (etcd's member list), as seen by member self (0:
// none of them, as for `k1s server --remove-member`, which removes its
// own member on purpose). It never removes the last voting member: a
// cluster without members cannot be started again, and the server's data
// is all that is left. Whether the others are up enough to keep quorum
// after the removal is etcd's own check (strict reconfiguration, on by
// default), which MemberRemove reports as an error.
func PlanRemoval(members []*etcdserverpb.Member, peerURL string, self uint64) Removal {
	i := slices.IndexFunc(members, func(m *etcdserverpb.Member) bool { return slices.Contains(m.PeerURLs, peerURL) })
	if i < 0 {
		return Removal{Action: RemovalDone}
	}
	m := members[i]
	r := Removal{ID: m.ID, Name: m.Name}
	if r.Name == "" {
		r.Name = fmt.Sprintf("(never started, peer URL %s)", peerURL)
	}
	switch {
	case m.ID == self:
		r.Action = RemovalElsewhere
	case m.IsLearner:
		r.Action = RemoveMember // a learner never counts towards quorum
	case voters(members) == 1:
		r.Action = RemovalRefused
		r.Reason = fmt.Sprintf("etcd member %s (%x) is the cluster's last voting member: removing it would leave no cluster (stop that server instead, or start another server before removing this one)", r.Name, m.ID)
	default:
		r.Action = RemoveMember
	}
	return r
}

func voters(members []*etcdserverpb.Member) int {
	n := 0
	for _, m := range members {
		if !m.IsLearner {
			n++
		}
	}
	return n
}
