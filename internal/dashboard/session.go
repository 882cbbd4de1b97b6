package dashboard

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
)

// session is one signed-in browser. The token never leaves the server:
// the browser holds only the random id.
type session struct {
	id      string
	csrf    string
	token   string
	user    string
	kube    kubernetes.Interface
	created time.Time
	seen    time.Time
}

// sessions is the server-side session map. Sessions end after idle time
// without a request or at maxAge, whichever comes first.
type sessions struct {
	mu     sync.Mutex
	m      map[string]*session
	idle   time.Duration
	maxAge time.Duration
	now    func() time.Time
}

func newSessions(idle, maxAge time.Duration) *sessions {
	return &sessions{m: map[string]*session{}, idle: idle, maxAge: maxAge, now: time.Now}
}

// randomID is 32 random bytes, URL-safe.
func randomID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		// crypto/rand does not fail on Linux; a session without entropy must not exist.
		panic("dashboard: no randomness: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *sessions) create(token, user string, kube kubernetes.Interface) *session {
	now := s.now()
	ss := &session{id: randomID(), csrf: randomID(), token: token, user: user, kube: kube, created: now, seen: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, o := range s.m {
		if s.expired(o, now) {
			delete(s.m, id)
		}
	}
	s.m[ss.id] = ss
	return ss
}

func (s *sessions) expired(ss *session, now time.Time) bool {
	return now.Sub(ss.seen) > s.idle || now.Sub(ss.created) > s.maxAge
}

// get returns the live session of id and marks it used.
func (s *sessions) get(id string) *session {
	if id == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.m[id]
	if ss == nil {
		return nil
	}
	now := s.now()
	if s.expired(ss, now) {
		delete(s.m, id)
		return nil
	}
	ss.seen = now
	return ss
}

func (s *sessions) delete(id string) {
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

// validCSRF compares in constant time so the token cannot be guessed byte by byte.
func (ss *session) validCSRF(got string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(ss.csrf)) == 1
}

// limiter allows max sign-in attempts per key (the client IP) per window.
type limiter struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	hits   map[string][]time.Time
	now    func() time.Time
}

func newLimiter(max int, window time.Duration) *limiter {
	return &limiter{max: max, window: window, hits: map[string][]time.Time{}, now: time.Now}
}

// allow records an attempt and reports whether it is within the limit.
func (l *limiter) allow(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	cut := now.Add(-l.window)
	for k, ts := range l.hits {
		i := 0
		for i < len(ts) && ts[i].Before(cut) {
			i++
		}
		if i == len(ts) {
			delete(l.hits, k)
		} else {
			l.hits[k] = ts[i:]
		}
	}
	if len(l.hits[key]) >= l.max {
		return false
	}
	l.hits[key] = append(l.hits[key], now)
	return true
}
