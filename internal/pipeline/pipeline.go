// Package pipeline runs start-up as an ordered list of small named steps,
// each finished only when its readiness gate passes, and supervises the
// long-running components those steps start.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Step is one stage of start-up. Run does the work and returns once the
// step is ready; long-running parts are started with Supervisor.Go.
type Step struct {
	Name string
	Run  func(ctx context.Context) error
}

// Run executes steps in order and stops at the first failure, naming it.
func Run(ctx context.Context, log logrus.FieldLogger, steps []Step) error {
	for _, s := range steps {
		start := time.Now()
		log.Infof("step %s: starting", s.Name)
		if err := s.Run(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.Name, err)
		}
		log.Infof("step %s: ready in %s", s.Name, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// ErrExited is returned for a component that stopped without being asked.
var ErrExited = errors.New("exited unexpectedly")

// Supervisor tracks long-running components. The first one to fail is
// reported on Failed(); Stop cancels components in reverse start order.
type Supervisor struct {
	mu       sync.Mutex
	comps    []*component
	failed   chan error
	failures []failure
}

type failure struct {
	order int // start order of the component
	err   error
}

type component struct {
	name   string
	cancel context.CancelFunc
	done   chan struct{}
}

func NewSupervisor() *Supervisor {
	return &Supervisor{failed: make(chan error, 1)}
}

// Go starts run in a goroutine with its own context, so that it can be
// stopped independently of the others.
func (s *Supervisor) Go(name string, run func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	c := &component{name: name, cancel: cancel, done: make(chan struct{})}
	s.mu.Lock()
	order := len(s.comps)
	s.comps = append(s.comps, c)
	s.mu.Unlock()
	go func() {
		defer close(c.done)
		err := run(ctx)
		if ctx.Err() != nil {
			return // asked to stop
		}
		if err == nil {
			err = ErrExited
		}
		err = fmt.Errorf("%s: %w", name, err)
		s.mu.Lock()
		s.failures = append(s.failures, failure{order, err})
		s.mu.Unlock()
		select {
		case s.failed <- err:
		default:
		}
	}()
}

// Failed delivers the first component failure.
func (s *Supervisor) Failed() <-chan error { return s.failed }

// Cause waits settle for failures that follow from the first one (a
// kubelet losing containerd, say), then returns the failure of the
// component started earliest: the one the others depend on.
func (s *Supervisor) Cause(settle time.Duration) error {
	time.Sleep(settle)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.failures) == 0 {
		return nil
	}
	first := s.failures[0]
	for _, f := range s.failures[1:] {
		if f.order < first.order {
			first = f
		}
	}
	return first.err
}

// Wait blocks until cond is true, polling every interval; it gives up when
// ctx ends, a component fails, or timeout passes, and says which.
func (s *Supervisor) Wait(ctx context.Context, what string, timeout time.Duration, cond func(context.Context) bool, last func() string) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond(ctx) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-s.failed:
			s.failed <- err // keep it for the caller's main loop
			return err
		case <-deadline.C:
			msg := fmt.Sprintf("%s not ready within %s", what, timeout)
			if l := last(); l != "" {
				msg += " (last answer: " + l + ")"
			}
			return errors.New(msg)
		case <-tick.C:
		}
	}
}

// Stop cancels the named component (or, with no names, all of them, newest
// first) and waits up to timeout for each.
func (s *Supervisor) Stop(log logrus.FieldLogger, timeout time.Duration, names ...string) {
	s.mu.Lock()
	comps := append([]*component(nil), s.comps...)
	s.mu.Unlock()
	for i := len(comps) - 1; i >= 0; i-- {
		c := comps[i]
		if len(names) > 0 && !slices.Contains(names, c.name) {
			continue
		}
		c.cancel()
		select {
		case <-c.done:
			log.Infof("%s stopped", c.name)
		case <-time.After(timeout):
			log.Warnf("%s did not stop within %s", c.name, timeout)
		}
	}
}
