package bootstrap

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Get reads the sealed bundle; found is false when no server published one.
func Get(ctx context.Context, kv clientv3.KV) (sealed []byte, found bool, err error) {
	resp, err := kv.Get(ctx, Key)
	if err != nil {
		return nil, false, fmt.Errorf("reading %s from the datastore: %w", Key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, false, nil
	}
	return resp.Kvs[0].Value, true, nil
}

// Publish stores sealed unless a bundle is there already. It returns the
// bundle that holds afterwards: sealed when this call created it (won),
// otherwise the one another server created first.
//
// The transaction is etcd's create idiom (mod revision 0, one put, no
// else branch), the only conditional write kine supports.
func Publish(ctx context.Context, kv clientv3.KV, sealed []byte) (stored []byte, won bool, err error) {
	resp, err := kv.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(Key), "=", 0)).
		Then(clientv3.OpPut(Key, string(sealed))).
		Commit()
	if err != nil {
		return nil, false, fmt.Errorf("storing %s in the datastore: %w", Key, err)
	}
	if resp.Succeeded {
		return sealed, true, nil
	}
	stored, found, err := Get(ctx, kv)
	if err != nil {
		return nil, false, err
	}
	if !found {
		return nil, false, fmt.Errorf("the datastore refused to create %s but holds none: retry", Key)
	}
	return stored, false, nil
}
