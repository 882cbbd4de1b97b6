package bootstrap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// SuccessorsKey holds, for each rotation of the server token
// (`k1s token rotate` on one server), the new secret sealed with the one
// it replaced: a server still on an older token follows the chain to the
// newest, takes it, and opens the bundle again. Each entry opens only with
// the secret it replaced, so the chain tells nothing to whoever lacks a
// token of the cluster; whoever has an old one and can read the datastore
// could open the bundle sealed with it anyway.
const SuccessorsKey = "/k1s/bootstrap/v1-token-successors"

const successorFormat = "k1s-token-successor"

// maxSuccessors bounds the chain; a server more rotations behind needs
// the current token given by hand.
const maxSuccessors = 16

type successor struct {
	Secret string `json:"secret"`
}

// AddSuccessor returns the chain list with the rotation old → next added.
func AddSuccessor(list []byte, old, next string) ([]byte, error) {
	var chain [][]byte
	if len(list) > 0 {
		if err := json.Unmarshal(list, &chain); err != nil {
			return nil, fmt.Errorf("%s: %w", SuccessorsKey, err)
		}
	}
	plain, err := json.Marshal(successor{Secret: next})
	if err != nil {
		return nil, err
	}
	entry, err := sealWith(old, successorFormat, "", plain)
	if err != nil {
		return nil, err
	}
	chain = append(chain, entry)
	if len(chain) > maxSuccessors {
		chain = chain[len(chain)-maxSuccessors:]
	}
	return json.Marshal(chain)
}

// FollowSuccessors walks the chain from secret to the newest secret it
// leads to; steps is 0 when secret has no successor.
func FollowSuccessors(list []byte, secret string) (newest string, steps int, err error) {
	var chain [][]byte
	if len(list) == 0 {
		return secret, 0, nil
	}
	if err := json.Unmarshal(list, &chain); err != nil {
		return "", 0, fmt.Errorf("%s: %w", SuccessorsKey, err)
	}
	newest = secret
	for moved := true; moved && steps <= len(chain); {
		moved = false
		for _, entry := range chain {
			plain, err := openWith(newest, successorFormat, SuccessorsKey, entry)
			if errors.Is(err, ErrWrongToken) {
				continue
			}
			if err != nil {
				return "", steps, err
			}
			var s successor
			if err := json.Unmarshal(plain, &s); err != nil || s.Secret == "" {
				return "", steps, fmt.Errorf("%s: an entry decrypts but does not parse: %v", SuccessorsKey, err)
			}
			newest, moved = s.Secret, true
			steps++
			break
		}
	}
	return newest, steps, nil
}

// GetSuccessors reads the chain and its mod revision (0: none yet).
func GetSuccessors(ctx context.Context, kv clientv3.KV) ([]byte, int64, error) {
	resp, err := kv.Get(ctx, SuccessorsKey)
	if err != nil {
		return nil, 0, fmt.Errorf("reading %s from the datastore: %w", SuccessorsKey, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, nil
	}
	return resp.Kvs[0].Value, resp.Kvs[0].ModRevision, nil
}

// RotateToken adds old → next to the chain, then re-seals the bundle b
// (at revision rev) with next. kine runs only single-key transactions, so
// these are two compare-and-swaps, the chain first: a chain entry whose
// bundle update then loses leads nowhere new and is not added twice. ok is
// false when another server changed either key first.
func RotateToken(ctx context.Context, kv clientv3.KV, b *Bundle, rev int64, old, next string) (newRev int64, ok bool, err error) {
	list, listRev, err := GetSuccessors(ctx, kv)
	if err != nil {
		return 0, false, err
	}
	if got, _, err := FollowSuccessors(list, old); err != nil || got != next {
		if list, err = AddSuccessor(list, old, next); err != nil {
			return 0, false, err
		}
		cmp := clientv3.Compare(clientv3.ModRevision(SuccessorsKey), "=", listRev)
		txn := kv.Txn(ctx).If(cmp).Then(clientv3.OpPut(SuccessorsKey, string(list)))
		if listRev != 0 {
			txn = txn.Else(clientv3.OpGet(SuccessorsKey)) // kine's update idiom
		}
		resp, err := txn.Commit()
		if err != nil {
			return 0, false, fmt.Errorf("storing %s: %w", SuccessorsKey, err)
		}
		if !resp.Succeeded {
			return 0, false, nil
		}
	}
	sealed, err := Seal(next, b)
	if err != nil {
		return 0, false, err
	}
	return Update(ctx, kv, sealed, rev)
}
