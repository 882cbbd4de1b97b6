package apilb

import (
	"bufio"
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// backend is a real TCP server that greets each connection with its name
// and then echoes lines. Its accepted connections stay open when it stops
// listening, as a host that vanished leaves them.
type backend struct {
	name string
	ln   net.Listener
	mu   sync.Mutex
	open []net.Conn
}

func startBackend(t *testing.T, name string) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.open = append(b.open, c)
			b.mu.Unlock()
			go func() {
				c.Write([]byte(name + "\n"))
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					c.Write([]byte(name + ":" + line))
				}
			}()
		}
	}()
	t.Cleanup(b.closeAll)
	return b
}

func (b *backend) addr() string { return b.ln.Addr().String() }

// stopListening refuses new connections but leaves the accepted ones open.
func (b *backend) stopListening() { b.ln.Close() }

func (b *backend) closeAll() {
	b.ln.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.open {
		c.Close()
	}
}

func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(os.Stderr)
	l.SetLevel(logrus.WarnLevel)
	return l
}

func startLB(t *testing.T, seed, state string) *LB {
	t.Helper()
	l, err := New("127.0.0.1:0", seed, state, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	l.CheckEvery, l.DialTimeout = 100*time.Millisecond, time.Second
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return l
}

// greeting connects through the balancer and returns who answered.
func greeting(t *testing.T, l *LB) (string, net.Conn) {
	t.Helper()
	c, err := net.DialTimeout("tcp", l.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		return "", nil
	}
	c.SetReadDeadline(time.Time{})
	return strings.TrimSpace(line), c
}

func TestStaysOnOneServerThenFailsOver(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	l := startLB(t, a.addr(), filepath.Join(t.TempDir(), "servers.json"))
	if err := l.SetServers([]string{a.addr(), b.addr()}); err != nil {
		t.Fatal(err)
	}
	var held net.Conn
	for i := range 5 {
		who, c := greeting(t, l)
		if who != "a" {
			t.Fatalf("connection %d went to %q, want the seed a while it answers", i, who)
		}
		if held == nil {
			held = c
		} else {
			c.Close()
		}
	}
	defer held.Close()
	// Data flows both ways through the proxy.
	if _, err := held.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(held)
	held.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := r.ReadString('\n'); err != nil || line != "a:ping\n" {
		t.Fatalf("echo through the balancer: %q %v", line, err)
	}
	// a stops answering but its open connection stays: the balancer must
	// notice and close it, so the client reconnects.
	a.stopListening()
	held.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("connection through the dead server still open")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("connection through the dead server was not closed within 5 s")
	}
	t.Logf("connection through the dead server closed after %s", time.Since(start).Round(time.Millisecond))
	for i := range 3 {
		if who, c := greeting(t, l); who != "b" {
			t.Fatalf("after a died, connection %d went to %q, want b", i, who)
		} else {
			c.Close()
		}
	}
	if l.Current() != b.addr() {
		t.Errorf("Current = %s, want b %s", l.Current(), b.addr())
	}
}

func TestDialFailureFailsOverWithoutWaitingForCheck(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	l, err := New("127.0.0.1:0", a.addr(), filepath.Join(t.TempDir(), "s.json"), quietLog())
	if err != nil {
		t.Fatal(err)
	}
	l.CheckEvery = time.Hour // only a failed dial can notice
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.SetServers([]string{b.addr()}); err != nil {
		t.Fatal(err)
	}
	a.closeAll()
	if who, c := greeting(t, l); who != "b" {
		t.Fatalf("with a down, the connection went to %q, want b", who)
	} else {
		c.Close()
	}
}

func TestListPersistsAndSeedStays(t *testing.T) {
	a, b, c := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")
	state := filepath.Join(t.TempDir(), "servers.json")
	l := startLB(t, a.addr(), state)
	if err := l.SetServers([]string{b.addr(), c.addr(), "not an address"}); err != nil {
		t.Fatal(err)
	}
	want := []string{a.addr(), b.addr(), c.addr()}
	if got := l.Servers(); !slices.Equal(got, want) {
		t.Fatalf("Servers = %v, want %v (seed kept first, bad entry dropped)", got, want)
	}
	if fi, err := os.Stat(state); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v", fi, err)
	}
	// A restarted agent whose seed is down reaches the saved servers.
	a.closeAll()
	l2 := startLB(t, a.addr(), state)
	if got := l2.Servers(); !slices.Equal(got, want) {
		t.Fatalf("after restart Servers = %v, want %v", got, want)
	}
	if who, conn := greeting(t, l2); who != "b" && who != "c" {
		t.Fatalf("restarted balancer with the seed down answered by %q, want b or c", who)
	} else {
		conn.Close()
	}
	// A server dropped from the list loses its connections.
	who, conn := greeting(t, l2)
	defer conn.Close()
	rest := []string{b.addr()}
	if who == "b" {
		rest = []string{c.addr()}
	}
	if err := l2.SetServers(rest); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := bufio.NewReader(conn).ReadString('\n'); err == nil {
		t.Fatal("connection to a server removed from the list still open")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection to removed server %s not closed", who)
	}
}

func TestBadSeed(t *testing.T) {
	if _, err := New("127.0.0.1:0", "no-port", filepath.Join(t.TempDir(), "s"), quietLog()); err == nil || !strings.Contains(err.Error(), "no-port") {
		t.Fatalf("New with a seed without port: %v", err)
	}
}
