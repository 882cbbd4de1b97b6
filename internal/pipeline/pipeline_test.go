package pipeline

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func TestRunStopsAtFirstFailureAndNamesIt(t *testing.T) {
	var ran []string
	step := func(name string, err error) Step {
		return Step{Name: name, Run: func(context.Context) error { ran = append(ran, name); return err }}
	}
	err := Run(context.Background(), quietLog(), []Step{step("a", nil), step("b", errors.New("boom")), step("c", nil)})
	if err == nil || err.Error() != "b: boom" {
		t.Fatalf("err = %v, want \"b: boom\"", err)
	}
	if strings.Join(ran, ",") != "a,b" {
		t.Fatalf("ran %v, want a,b", ran)
	}
}

// quickSupervisor settles failures in 20 ms, so tests stay fast.
func quickSupervisor() *Supervisor {
	s := NewSupervisor(nil)
	s.Settle = 20 * time.Millisecond
	return s
}

func never(context.Context) bool { return false }
func noAnswer() string           { return "" }

func TestWaitEndsWhenAComponentFails(t *testing.T) {
	s := quickSupervisor()
	s.Go("comp", time.Second, func(context.Context) error { return errors.New("bad flag") })
	err := s.Wait(context.Background(), "never", time.Minute, never, noAnswer)
	if err == nil || err.Error() != "comp: bad flag" {
		t.Fatalf("err = %v, want \"comp: bad flag\"", err)
	}
	// The failure stays visible to the main loop.
	select {
	case <-s.Failed():
		if err := s.Cause(); err == nil || !strings.HasPrefix(err.Error(), "comp:") {
			t.Fatalf("Cause() = %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Failed() not closed after Wait saw the failure")
	}
}

// Two components failing together (a kubelet right after containerd) must
// not hang start-up, and the one started first is named.
func TestTwoFailuresTogetherEndWaitAndNameTheFirst(t *testing.T) {
	for i := 0; i < 200; i++ {
		s := NewSupervisor(nil)
		s.Settle = 5 * time.Millisecond
		start := make(chan struct{})
		s.Go("containerd", time.Second, func(context.Context) error { <-start; return errors.New("killed") })
		s.Go("kubelet", time.Second, func(context.Context) error { <-start; return errors.New("lost containerd") })
		done := make(chan error, 1)
		go func() { done <- s.Wait(context.Background(), "node", time.Minute, never, noAnswer) }()
		close(start)
		select {
		case err := <-done:
			if err == nil || err.Error() != "containerd: killed" {
				t.Fatalf("run %d: Wait() = %v, want containerd's failure", i, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("run %d: Wait did not return after two components failed", i)
		}
		// A second waiter (the main loop) sees the same failure.
		if err := s.Cause(); err == nil || err.Error() != "containerd: killed" {
			t.Fatalf("run %d: Cause() = %v", i, err)
		}
	}
}

func TestWaitTimeoutSaysLastAnswer(t *testing.T) {
	s := quickSupervisor()
	err := s.Wait(context.Background(), "thing", 300*time.Millisecond, never, func() string { return "HTTP 500" })
	if err == nil || !strings.Contains(err.Error(), "thing not ready within 300ms (last answer: HTTP 500)") {
		t.Fatalf("err = %v", err)
	}
}

// A long Wait warns what it waits for, with the last answer, before it
// gives up; a Wait that ends quickly says nothing.
func TestLongWaitIsLogged(t *testing.T) {
	log, hook := logtest.NewNullLogger()
	s := NewSupervisor(log)
	s.NoticeEvery = 100 * time.Millisecond
	if err := s.Wait(context.Background(), "quick", time.Minute, func(context.Context) bool { return true }, noAnswer); err != nil {
		t.Fatal(err)
	}
	err := s.Wait(context.Background(), "node n1 Ready", 350*time.Millisecond, never, func() string { return "KubeletNotReady: cni not initialized" })
	if err == nil {
		t.Fatal("Wait() = nil, want a timeout")
	}
	var warnings []string
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.WarnLevel {
			warnings = append(warnings, e.Message)
		}
	}
	if len(warnings) < 2 || len(warnings) > 4 {
		t.Fatalf("warnings = %q, want about three (one per 100ms of a 350ms wait)", warnings)
	}
	head, tail := "still waiting for node n1 Ready after ", " (gives up after 350ms); last answer: KubeletNotReady: cni not initialized"
	if !strings.HasPrefix(warnings[0], head) || !strings.HasSuffix(warnings[0], tail) {
		t.Fatalf("first warning = %q, want %q…%q", warnings[0], head, tail)
	}
}

// A check that hangs (a request to a stuck server) ends with its context:
// the wait still times out, and says what the check last got.
func TestWaitTimesOutThroughAHungCheck(t *testing.T) {
	s := quickSupervisor()
	var last string
	hang := func(ctx context.Context) bool {
		<-ctx.Done()
		last = ctx.Err().Error()
		return false
	}
	begin := time.Now()
	err := s.Wait(context.Background(), "thing", 300*time.Millisecond, hang, func() string { return last })
	if err == nil || !strings.Contains(err.Error(), "thing not ready within 300ms (last answer: context deadline exceeded)") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Fatalf("Wait returned after %s, its timeout was 300ms", d)
	}
}

func TestExitWithoutErrorIsAFailure(t *testing.T) {
	s := quickSupervisor()
	s.Go("quiet", time.Second, func(context.Context) error { return nil })
	select {
	case <-s.Failed():
		if err := s.Cause(); !errors.Is(err, ErrExited) {
			t.Fatalf("Cause() = %v, want ErrExited", err)
		}
	case <-time.After(time.Second):
		t.Fatal("no failure reported")
	}
}

func TestCauseIsNilWithoutFailure(t *testing.T) {
	s := NewSupervisor(nil) // full settle: Cause must not wait when nothing failed
	start := time.Now()
	if err := s.Cause(); err != nil {
		t.Fatalf("Cause() = %v, want nil", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("Cause() without failures took %s", d)
	}
}

func TestStopIsNotAFailureAndGoesInReverseOrder(t *testing.T) {
	s := quickSupervisor()
	var order []string
	stopped := make(chan string, 3)
	for _, n := range []string{"first", "second", "third"} {
		s.Go(n, time.Second, func(ctx context.Context) error { <-ctx.Done(); stopped <- n; return ctx.Err() })
	}
	s.Stop(quietLog())
	close(stopped)
	for n := range stopped {
		order = append(order, n)
	}
	if strings.Join(order, ",") != "third,second,first" {
		t.Fatalf("stop order %v, want third,second,first", order)
	}
	select {
	case <-s.Failed():
		t.Fatalf("a requested stop was reported as failure: %v", s.Cause())
	default:
	}
}

// Each component's own stop timeout bounds the wait for it: one that does
// not stop delays the next by its timeout only.
func TestStopUsesEachComponentsTimeout(t *testing.T) {
	s := quickSupervisor()
	var mu sync.Mutex
	var stoppedAt time.Time
	s.Go("base", time.Second, func(ctx context.Context) error {
		<-ctx.Done()
		mu.Lock()
		stoppedAt = time.Now()
		mu.Unlock()
		return nil
	})
	s.Go("stuck", 300*time.Millisecond, func(ctx context.Context) error { select {} })
	begin := time.Now()
	s.Stop(quietLog())
	mu.Lock()
	defer mu.Unlock()
	if stoppedAt.IsZero() {
		t.Fatal("base was not stopped")
	}
	if d := stoppedAt.Sub(begin); d < 250*time.Millisecond || d > 2*time.Second {
		t.Fatalf("base stopped %s after Stop began, want about stuck's 300ms timeout", d)
	}
}

func TestCauseIsTheEarliestStartedFailure(t *testing.T) {
	s := quickSupervisor()
	base := make(chan struct{})
	s.Go("runtime", time.Second, func(context.Context) error { <-base; return errors.New("killed") })
	s.Go("agent", time.Second, func(context.Context) error { return errors.New("lost the runtime") })
	<-s.Failed() // the dependent component fails first
	close(base)
	s.Settle = 200 * time.Millisecond
	if err := s.Cause(); err == nil || err.Error() != "runtime: killed" {
		t.Fatalf("Cause() = %v, want the runtime's failure", err)
	}
}

func TestAheadRunsAlongsideAndReportsItsFailure(t *testing.T) {
	release := make(chan struct{})
	var ran []string
	a := RunAhead(context.Background(), quietLog(), []Step{
		{Name: "slow", Run: func(context.Context) error { <-release; ran = append(ran, "slow"); return nil }},
		{Name: "bad", Run: func(context.Context) error { return errors.New("boom") }},
	})
	// The caller goes on while the first step still waits.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := a.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait before the steps finished = %v, want the caller's deadline", err)
	}
	close(release)
	if err := a.Wait(context.Background()); err == nil || err.Error() != "bad: boom" {
		t.Fatalf("Wait = %v, want \"bad: boom\"", err)
	}
	if strings.Join(ran, ",") != "slow" {
		t.Fatalf("ran %v", ran)
	}
}

func TestAheadCancelWaitsForTheStepToReturn(t *testing.T) {
	returned := make(chan struct{})
	a := RunAhead(context.Background(), quietLog(), []Step{
		{Name: "blocks", Run: func(ctx context.Context) error {
			<-ctx.Done()
			time.Sleep(20 * time.Millisecond) // still cleaning up
			close(returned)
			return ctx.Err()
		}},
	})
	a.Cancel()
	select {
	case <-returned:
	default:
		t.Fatal("Cancel returned before the step did")
	}
	var none *Ahead
	none.Cancel() // a server without a node has none
}
