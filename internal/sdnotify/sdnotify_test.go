package sdnotify

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestNotifySendsToSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	useSocket(t, path)
	sent, err := Notify(Ready)
	if err != nil || !sent {
		t.Fatalf("Notify: sent=%v err=%v", sent, err)
	}
	buf := make([]byte, 64)
	_ = l.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := l.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(buf[:n]); got != Ready {
		t.Fatalf("got %q, want %q", got, Ready)
	}
}

func TestNotifyWithoutSocketDoesNothing(t *testing.T) {
	useSocket(t, "")
	if sent, err := Notify(Ready); sent || err != nil {
		t.Fatalf("Notify without NOTIFY_SOCKET: sent=%v err=%v, want false, nil", sent, err)
	}
}

func TestNotifyNamesMissingSocket(t *testing.T) {
	useSocket(t, filepath.Join(t.TempDir(), "absent"))
	if _, err := Notify(Ready); err == nil {
		t.Fatal("Notify to a missing socket: no error")
	}
}

func useSocket(t *testing.T, path string) {
	old := socket
	socket = path
	t.Cleanup(func() { socket = old })
}

// The components k1s embeds must not find the variable.
func TestTakeSocketRemovesVariable(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "/run/x.sock")
	if got := takeSocket(); got != "/run/x.sock" {
		t.Fatalf("takeSocket() = %q", got)
	}
	if v, ok := os.LookupEnv("NOTIFY_SOCKET"); ok {
		t.Fatalf("NOTIFY_SOCKET still set: %q", v)
	}
}
