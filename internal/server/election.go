package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// ControllersLease is the Lease (kube-system) whose holder runs the
// scheduler and the controller-manager when servers share a datastore.
const ControllersLease = "k1s-controllers"

// Lease timing: upstream's defaults for its components.
const (
	leaseDuration = 15 * time.Second
	renewDeadline = 10 * time.Second
	retryPeriod   = 2 * time.Second
)

// electedControllers runs the scheduler and the controller-manager only
// while this server holds ControllersLease. k1s elects instead of the
// components themselves because their own election calls os.Exit when it
// ends (even on a requested stop), which would skip k1s's orderly
// shutdown. Losing the lease while running ends the server with an error,
// as upstream's components would: a restart starts them cleanly, and a
// component is never started twice in one process.
func (r *run) electedControllers(sched, cm []string) error {
	kube, err := r.adminClient()
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	suffix := make([]byte, 6)
	if _, err := rand.Read(suffix); err != nil {
		return err
	}
	id := fmt.Sprintf("%s_%s_%s", host, r.cfg.AdvertiseAddress, hex.EncodeToString(suffix))
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: metav1.NamespaceSystem, Name: ControllersLease},
		Client:     kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
	r.log.Infof("the scheduler and controller-manager run on the server holding Lease kube-system/%s (this server: %s)", ControllersLease, id)
	r.sup.Go("controllers-lease", stopController, func(ctx context.Context) error {
		var wg sync.WaitGroup
		failed := make(chan error, 2)
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, Name: ControllersLease, ReleaseOnCancel: true,
			LeaseDuration: leaseDuration, RenewDeadline: renewDeadline, RetryPeriod: retryPeriod,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(lctx context.Context) {
					r.log.Info("this server holds the controllers lease: starting kube-scheduler and kube-controller-manager")
					run := func(name string, fn func(context.Context, []string) error, args []string) {
						defer wg.Done()
						if err := fn(lctx, args); lctx.Err() == nil {
							if err == nil {
								err = errors.New("exited")
							}
							failed <- fmt.Errorf("%s: %w", name, err)
						}
					}
					wg.Add(2)
					go run("kube-scheduler", r.exec.Scheduler, sched)
					go run("kube-controller-manager", r.exec.ControllerManager, cm)
				},
				OnStoppedLeading: func() {},
			},
		})
		if err != nil {
			return err
		}
		done := make(chan struct{})
		go func() { le.Run(ctx); close(done) }()
		select {
		case err := <-failed:
			return err
		case <-done:
		}
		wg.Wait()
		if ctx.Err() == nil {
			return fmt.Errorf("lost Lease kube-system/%s to another server: restart this server to stand by again", ControllersLease)
		}
		return nil
	})
	return nil
}
