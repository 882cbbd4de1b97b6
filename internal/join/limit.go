package join

import (
	"net"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// The join endpoints sit outside the apiserver's filters, so they limit
// guessing themselves: a source that sent maxFailures wrong tokens within
// failureWindow is answered 429 until the window ends.
const (
	maxFailures   = 5
	failureWindow = time.Minute
	// maxSources bounds the tracker's memory; beyond it, expired entries are
	// dropped, and if none are, the oldest goes.
	maxSources = 4096
)

type source struct {
	start    time.Time // of the current window
	failures int       // wrong tokens in the window
	refused  int       // refusals (any reason) in the window
}

// limiter tracks refusals per source address. It also keeps the log
// bounded: one line per source per window, however many refusals.
type limiter struct {
	mu      sync.Mutex
	sources map[string]*source
	now     func() time.Time
}

func newLimiter() *limiter { return &limiter{sources: map[string]*source{}, now: time.Now} }

func sourceOf(remoteAddr string) string {
	if h, _, err := net.SplitHostPort(remoteAddr); err == nil {
		return h
	}
	return remoteAddr
}

// get returns addr's entry for the current window; callers hold mu.
func (l *limiter) get(addr string) *source {
	now := l.now()
	s := l.sources[addr]
	if s != nil && now.Sub(s.start) < failureWindow {
		return s
	}
	if s == nil && len(l.sources) >= maxSources {
		l.prune(now)
	}
	s = &source{start: now}
	l.sources[addr] = s
	return s
}

func (l *limiter) prune(now time.Time) {
	var oldest string
	for a, s := range l.sources {
		if now.Sub(s.start) >= failureWindow {
			delete(l.sources, a)
		} else if oldest == "" || s.start.Before(l.sources[oldest].start) {
			oldest = a
		}
	}
	if len(l.sources) >= maxSources {
		delete(l.sources, oldest)
	}
}

// blocked reports whether addr must wait, and for how long.
func (l *limiter) blocked(addr string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.sources[addr]
	if s == nil || s.failures < maxFailures {
		return 0, false
	}
	left := failureWindow - l.now().Sub(s.start)
	if left <= 0 {
		return 0, false
	}
	return left, true
}

// refuse records a refusal of addr (a wrong token counts towards the
// limit) and logs it if it is the source's first in this window.
func (l *limiter) refuse(log logrus.FieldLogger, addr string, wrongToken bool, why string) {
	l.mu.Lock()
	s := l.get(addr)
	s.refused++
	if wrongToken {
		s.failures++
	}
	first := s.refused == 1
	l.mu.Unlock()
	if first {
		log.Warnf("refused a join from %s: %s (further refusals of %s within %s are not logged; after %d wrong tokens it must wait)", addr, why, addr, failureWindow, maxFailures)
	}
}
