// Package sdnotify tells a service manager (systemd's Type=notify, or
// anything listening on $NOTIFY_SOCKET) about k1s's state: READY=1 once a
// server or agent is ready, STOPPING=1 when it starts shutting down. Without
// NOTIFY_SOCKET it does nothing, so k1s run by hand or by OpenRC is unaffected.
// Only k1s itself speaks: the variable is removed from its environment.
package sdnotify

import (
	"fmt"
	"net"
	"os"
)

// Messages of the sd_notify protocol k1s sends.
const (
	Ready    = "READY=1"
	Stopping = "STOPPING=1"
)

// socket is $NOTIFY_SOCKET as k1s was started with. It is taken out of the
// environment before anything runs: the embedded kube-apiserver and kubelet
// send READY=1 themselves as soon as they serve, and containerd (a child)
// would too, long before k1s is ready.
var socket = takeSocket()

func takeSocket() string {
	s := os.Getenv("NOTIFY_SOCKET")
	_ = os.Unsetenv("NOTIFY_SOCKET")
	return s
}

// Notify sends state (e.g. Ready) to the service manager's socket. It
// returns false without error when k1s was started without NOTIFY_SOCKET.
func Notify(state string) (bool, error) {
	path := socket
	if path == "" {
		return false, nil
	}
	// A leading '@' names a socket in the abstract namespace.
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("sd_notify %s: %w", state, err)
	}
	return true, nil
}

// Tell is Notify for callers that only log a failure: k1s keeps running
// when the service manager cannot be told.
func Tell(log interface{ Warn(args ...interface{}) }, state string) {
	if _, err := Notify(state); err != nil {
		log.Warn(err)
	}
}
