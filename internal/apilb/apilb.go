// Package apilb is the agent's client-side load balancer for the
// apiserver: a TCP proxy on a loopback port of the agent's process that
// every client of the agent (kubelet, kube-proxy, flannel, k1s itself)
// uses instead of one server's address. It knows every server (seeded with
// --server, then told the `kubernetes` Service's endpoints), keeps to one
// server while that one answers, and moves to another when it stops: a
// periodic connect check or a failed dial marks a server down, and the
// connections through it are closed so that watches reconnect at once
// through a live one. TLS passes through untouched (the servers share one
// CA, so any of them satisfies the clients). The list is saved in the
// agent's data dir, so an agent restarted while the server it joined is
// down reaches the others.
package apilb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/k1s-io/k1s/internal/atomicfile"
)

// Defaults for how fast a dead server is noticed.
const (
	DefaultCheckEvery  = 2 * time.Second
	DefaultDialTimeout = 3 * time.Second
)

// LB is one load balancer. Make it with New; Start listens.
type LB struct {
	// Seed is the --server address (host:port). It stays in the list even
	// when the endpoints do not name it: it may be a DNS name or a VIP.
	seed       string
	statePath  string
	listenAddr string
	log        logrus.FieldLogger

	CheckEvery, DialTimeout time.Duration

	ln net.Listener

	mu      sync.Mutex
	servers []string        // seed first, then the learned ones
	down    map[string]bool // failed its last check or dial
	current string          // where new connections go while it answers
	conns   map[string]map[net.Conn]struct{}
}

// New makes a balancer listening on listen (e.g. 127.0.0.1:6444) for the
// servers seed and those saved at statePath.
func New(listen, seed, statePath string, log logrus.FieldLogger) (*LB, error) {
	if _, _, err := net.SplitHostPort(seed); err != nil {
		return nil, fmt.Errorf("apiserver load balancer: server address %q: %w", seed, err)
	}
	l := &LB{seed: seed, statePath: statePath, listenAddr: listen, log: log,
		CheckEvery: DefaultCheckEvery, DialTimeout: DefaultDialTimeout,
		servers: []string{seed}, down: map[string]bool{}, current: seed, conns: map[string]map[net.Conn]struct{}{}}
	saved, err := l.load()
	if err != nil {
		log.Warnf("apiserver load balancer: ignoring the saved servers: %v", err)
	}
	l.merge(saved)
	return l, nil
}

type state struct {
	Servers []string `json:"servers"`
}

func (l *LB) load() ([]string, error) { return Saved(l.statePath) }

// Saved is the list of servers (host:port) a balancer saved at statePath;
// none when the file does not exist.
func Saved(statePath string) ([]string, error) {
	data, err := os.ReadFile(statePath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var s state
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", statePath, err)
	}
	return s.Servers, nil
}

// merge sets the list to the seed plus learned (valid host:port ones).
func (l *LB) merge(learned []string) {
	l.servers = []string{l.seed}
	for _, s := range learned {
		if _, _, err := net.SplitHostPort(s); err == nil && !slices.Contains(l.servers, s) {
			l.servers = append(l.servers, s)
		}
	}
}

// Start listens and serves until ctx ends.
func (l *LB) Start(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", l.listenAddr)
	if err != nil {
		return fmt.Errorf("apiserver load balancer: %w (is another k1s agent running on this host? choose another --apiserver-lb-port)", err)
	}
	l.ln = ln
	go func() { <-ctx.Done(); ln.Close(); l.closeAll() }()
	go l.acceptLoop()
	go l.checkLoop(ctx)
	return nil
}

// Addr is the listening host:port.
func (l *LB) Addr() string { return l.ln.Addr().String() }

// URL is the https URL clients are given.
func (l *LB) URL() string { return "https://" + l.Addr() }

// Servers is the current list, seed first.
func (l *LB) Servers() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.servers)
}

// Current is the server new connections go to.
func (l *LB) Current() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.current
}

// SetServers replaces the learned servers (the seed stays) and saves the
// list. Connections to a server no longer listed are closed.
func (l *LB) SetServers(learned []string) error {
	l.mu.Lock()
	old := l.servers
	l.merge(learned)
	now := slices.Clone(l.servers)
	var gone []string
	for _, s := range old {
		if !slices.Contains(now, s) {
			gone = append(gone, s)
			delete(l.down, s)
		}
	}
	if !slices.Contains(now, l.current) {
		l.current = l.pickLocked("")
	}
	l.mu.Unlock()
	for _, s := range gone {
		l.closeConns(s)
	}
	if !slices.Equal(old, now) {
		l.log.Infof("apiserver load balancer: servers %v", now)
	}
	data, err := json.Marshal(state{Servers: now})
	if err != nil {
		return err
	}
	return atomicfile.Write(l.statePath, data, 0o600)
}

// pickLocked chooses a server that is not down, other than avoid if it
// can; with every server down, the next one in the list after avoid.
func (l *LB) pickLocked(avoid string) string {
	for _, s := range l.servers {
		if s != avoid && !l.down[s] {
			return s
		}
	}
	if i := slices.Index(l.servers, avoid); i >= 0 {
		return l.servers[(i+1)%len(l.servers)]
	}
	return l.servers[0]
}

// candidates is the dial order: the current server, the others that are
// up, then those marked down (a check may be stale).
func (l *LB) candidates() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []string{l.current}
	for _, s := range l.servers {
		if s != l.current && !l.down[s] {
			out = append(out, s)
		}
	}
	for _, s := range l.servers {
		if s != l.current && l.down[s] {
			out = append(out, s)
		}
	}
	return out
}

func (l *LB) acceptLoop() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			l.log.Warnf("apiserver load balancer: accept: %v", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go l.serve(c)
	}
}

func (l *LB) serve(client net.Conn) {
	var backend net.Conn
	var server string
	for _, s := range l.candidates() {
		c, err := net.DialTimeout("tcp", s, l.DialTimeout)
		if err == nil {
			backend, server = c, s
			break
		}
		l.markDown(s, err)
	}
	if backend == nil {
		client.Close()
		return
	}
	l.markUp(server, true)
	if !l.track(server, client, backend) {
		client.Close()
		backend.Close()
		return
	}
	defer l.untrack(server, client, backend)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(backend, client)
	go pipe(client, backend)
	<-done
	// One side ended: end both, so neither copy waits forever.
	client.Close()
	backend.Close()
	<-done
}

func (l *LB) track(server string, c ...net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !slices.Contains(l.servers, server) {
		return false
	}
	m := l.conns[server]
	if m == nil {
		m = map[net.Conn]struct{}{}
		l.conns[server] = m
	}
	for _, x := range c {
		m[x] = struct{}{}
	}
	return true
}

func (l *LB) untrack(server string, c ...net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, x := range c {
		delete(l.conns[server], x)
	}
}

// closeConns closes every connection through server.
func (l *LB) closeConns(server string) int {
	l.mu.Lock()
	var cs []net.Conn
	for c := range l.conns[server] {
		cs = append(cs, c)
	}
	l.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
	return len(cs) / 2
}

func (l *LB) closeAll() {
	for _, s := range l.Servers() {
		l.closeConns(s)
	}
}

// markDown records a failed server; if it was the current one, new
// connections go elsewhere and the ones through it are closed.
func (l *LB) markDown(server string, why error) {
	l.mu.Lock()
	was := l.down[server]
	l.down[server] = true
	moved := ""
	if l.current == server {
		l.current = l.pickLocked(server)
		moved = l.current
	}
	l.mu.Unlock()
	if !was {
		l.log.Warnf("apiserver load balancer: server %s is down: %v", server, why)
	}
	if moved != "" && moved != server {
		n := l.closeConns(server)
		l.log.Infof("apiserver load balancer: using server %s now; closed %d connections through %s", moved, n, server)
	}
}

// markUp records a server that answered; sticky says it became current
// because a client reached it.
func (l *LB) markUp(server string, sticky bool) {
	l.mu.Lock()
	was := l.down[server]
	delete(l.down, server)
	if sticky {
		l.current = server
	} else if l.down[l.current] {
		l.current = server
	}
	l.mu.Unlock()
	if was {
		l.log.Infof("apiserver load balancer: server %s answers again", server)
	}
}

func (l *LB) checkLoop(ctx context.Context) {
	t := time.NewTicker(l.CheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var wg sync.WaitGroup
		for _, s := range l.Servers() {
			wg.Go(func() {
				c, err := net.DialTimeout("tcp", s, l.DialTimeout)
				if err != nil {
					l.markDown(s, err)
					return
				}
				c.Close()
				l.markUp(s, false)
			})
		}
		wg.Wait()
	}
}
