// Package pipeline runs start-up as an ordered list of small named steps,
// each finished only when its readiness gate passes, and supervises the
// long-running components those steps start.
package pipeline

import (
	"context"
	"errors"
	"fmt"
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

// Ahead runs steps in a goroutine of its own while the caller's pipeline
// goes on: for steps that need nothing the steps run meanwhile produce,
// such as a server's node preparing containerd and its images while the
// apiserver starts.
type Ahead struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// RunAhead starts steps with Run in the background.
func RunAhead(ctx context.Context, log logrus.FieldLogger, steps []Step) *Ahead {
	ctx, cancel := context.WithCancel(ctx)
	a := &Ahead{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		a.err = Run(ctx, log, steps)
	}()
	return a
}

// Wait returns the steps' result once they finished, or ctx's error.
func (a *Ahead) Wait(ctx context.Context) error {
	select {
	case <-a.done:
		return a.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Cancel stops the steps and waits for them to return, so that none of
// them starts a component after the supervisor was stopped. A nil Ahead
// does nothing.
func (a *Ahead) Cancel() {
	if a == nil {
		return
	}
	a.cancel()
	<-a.done
}

// ErrExited is returned for a component that stopped without being asked.
var ErrExited = errors.New("exited unexpectedly")

// DefaultSettle is how long Cause waits for failures that follow the first.
const DefaultSettle = time.Second

// Supervisor tracks long-running components. Failed() is closed at the
// first failure and Cause names the component that failed first in start
// order; Stop stops every component in reverse start order.
type Supervisor struct {
	// Settle is how long Cause waits for failures that follow the first.
	Settle time.Duration
	// Log, when set, gets a warning every NoticeEvery while a Wait goes
	// on, so a start that hangs says what it waits for before it times out.
	Log         logrus.FieldLogger
	NoticeEvery time.Duration

	mu       sync.Mutex
	comps    []*component
	failed   chan struct{}
	failures []failure
}

type failure struct {
	order int // start order of the component
	err   error
}

type component struct {
	name    string
	timeout time.Duration // how long Stop waits for it
	cancel  context.CancelFunc
	done    chan struct{}
}

// DefaultNotice is how long a Wait goes on before it is logged.
const DefaultNotice = 20 * time.Second

// NewSupervisor returns a Supervisor that logs long waits to log (nil: silent).
func NewSupervisor(log logrus.FieldLogger) *Supervisor {
	return &Supervisor{Settle: DefaultSettle, Log: log, NoticeEvery: DefaultNotice, failed: make(chan struct{})}
}

// Go starts run in a goroutine with its own context. Stop cancels that
// context and waits up to stopTimeout for run to return.
func (s *Supervisor) Go(name string, stopTimeout time.Duration, run func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	c := &component{name: name, timeout: stopTimeout, cancel: cancel, done: make(chan struct{})}
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
		s.mu.Lock()
		s.failures = append(s.failures, failure{order, fmt.Errorf("%s: %w", name, err)})
		if len(s.failures) == 1 {
			close(s.failed)
		}
		s.mu.Unlock()
	}()
}

// Failed is closed when the first component fails.
func (s *Supervisor) Failed() <-chan struct{} { return s.failed }

// Cause waits Settle for failures that follow from the first one (a
// kubelet losing containerd, say), then returns the failure of the
// component started earliest: the one the others depend on. It is nil
// while nothing failed.
func (s *Supervisor) Cause() error {
	s.mu.Lock()
	n := len(s.failures)
	s.mu.Unlock()
	if n == 0 {
		return nil
	}
	time.Sleep(s.Settle)
	s.mu.Lock()
	defer s.mu.Unlock()
	first := s.failures[0]
	for _, f := range s.failures[1:] {
		if f.order < first.order {
			first = f
		}
	}
	return first.err
}

// gatePoll is how often Wait checks its condition. A node's start passes
// about ten gates in a row, each of which waits half a poll on average:
// at 200 ms that was ~1 s of start → node Ready; the checks are cheap
// local requests made only during start-up.
const gatePoll = 50 * time.Millisecond

// condTimeout bounds one check of a Wait's condition.
const condTimeout = 10 * time.Second

// Wait blocks until cond is true, polling every gatePoll; it gives up when
// ctx ends, a component fails (returning Cause), or timeout passes, and
// says which. cond must return when its context ends.
func (s *Supervisor) Wait(ctx context.Context, what string, timeout time.Duration, cond func(context.Context) bool, last func() string) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(gatePoll)
	defer tick.Stop()
	start := time.Now()
	var notice <-chan time.Time
	if s.Log != nil && s.NoticeEvery > 0 {
		t := time.NewTicker(s.NoticeEvery)
		defer t.Stop()
		notice = t.C
	}
	for {
		// Each check gets its own deadline: a request that hangs must not
		// hold the wait past its timeout or keep it from saying so.
		check := min(condTimeout, time.Until(start.Add(timeout)))
		cctx, cancel := context.WithTimeout(ctx, max(check, time.Millisecond))
		ok := cond(cctx)
		cancel()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.failed:
			return s.Cause()
		case <-deadline.C:
			msg := fmt.Sprintf("%s not ready within %s", what, timeout)
			if l := last(); l != "" {
				msg += " (last answer: " + l + ")"
			}
			return errors.New(msg)
		case <-notice:
			msg := fmt.Sprintf("still waiting for %s after %s (gives up after %s)", what, time.Since(start).Round(time.Second), timeout)
			if l := last(); l != "" {
				msg += "; last answer: " + l
			}
			s.Log.Warn(msg)
		case <-tick.C:
		}
	}
}

// Stop cancels every component, newest first, waiting for each up to the
// stop timeout it was started with, so a component stops before those it
// depends on. Calling it again does nothing more.
func (s *Supervisor) Stop(log logrus.FieldLogger) {
	s.mu.Lock()
	comps := s.comps
	s.comps = nil
	s.mu.Unlock()
	for i := len(comps) - 1; i >= 0; i-- {
		c := comps[i]
		c.cancel()
		select {
		case <-c.done:
			log.Infof("%s stopped", c.name)
		case <-time.After(c.timeout):
			log.Warnf("%s did not stop within %s", c.name, c.timeout)
		}
	}
}
