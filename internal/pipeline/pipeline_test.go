package pipeline

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
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

func TestWaitEndsWhenAComponentFails(t *testing.T) {
	s := NewSupervisor()
	s.Go("comp", func(context.Context) error { return errors.New("bad flag") })
	err := s.Wait(context.Background(), "never", time.Minute, func(context.Context) bool { return false }, func() string { return "" })
	if err == nil || err.Error() != "comp: bad flag" {
		t.Fatalf("err = %v, want \"comp: bad flag\"", err)
	}
	// The failure stays available for the main loop.
	select {
	case err := <-s.Failed():
		if !strings.HasPrefix(err.Error(), "comp:") {
			t.Fatalf("Failed() = %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("failure was consumed by Wait")
	}
}

func TestWaitTimeoutSaysLastAnswer(t *testing.T) {
	s := NewSupervisor()
	err := s.Wait(context.Background(), "thing", 300*time.Millisecond, func(context.Context) bool { return false }, func() string { return "HTTP 500" })
	if err == nil || !strings.Contains(err.Error(), "thing not ready within 300ms (last answer: HTTP 500)") {
		t.Fatalf("err = %v", err)
	}
}

func TestExitWithoutErrorIsAFailure(t *testing.T) {
	s := NewSupervisor()
	s.Go("quiet", func(context.Context) error { return nil })
	select {
	case err := <-s.Failed():
		if !errors.Is(err, ErrExited) {
			t.Fatalf("err = %v, want ErrExited", err)
		}
	case <-time.After(time.Second):
		t.Fatal("no failure reported")
	}
}

func TestStopIsNotAFailureAndGoesInReverseOrder(t *testing.T) {
	s := NewSupervisor()
	var order []string
	stopped := make(chan string, 2)
	for _, n := range []string{"first", "second"} {
		s.Go(n, func(ctx context.Context) error { <-ctx.Done(); stopped <- n; return ctx.Err() })
	}
	s.Stop(quietLog(), time.Second)
	close(stopped)
	for n := range stopped {
		order = append(order, n)
	}
	if strings.Join(order, ",") != "second,first" {
		t.Fatalf("stop order %v, want second,first", order)
	}
	select {
	case err := <-s.Failed():
		t.Fatalf("a requested stop was reported as failure: %v", err)
	default:
	}
}

func TestCauseIsTheEarliestStartedFailure(t *testing.T) {
	s := NewSupervisor()
	base := make(chan struct{})
	s.Go("runtime", func(context.Context) error { <-base; return errors.New("killed") })
	s.Go("agent", func(context.Context) error { return errors.New("lost the runtime") })
	<-s.Failed() // the dependent component fails first
	close(base)
	if err := s.Cause(200 * time.Millisecond); err == nil || err.Error() != "runtime: killed" {
		t.Fatalf("Cause() = %v, want the runtime's failure", err)
	}
}
