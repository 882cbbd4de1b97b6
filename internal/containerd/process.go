package containerd

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	ctrd "github.com/containerd/containerd/v2/client"
	"github.com/sirupsen/logrus"

	"github.com/k1s-io/k1s/internal/gotune"
)

// Run writes the config, stops a containerd left behind by a k1s that
// died, starts containerd (the binary k1s ships, installed in the node's
// bin dir) and supervises it: it returns when ctx is
// cancelled (after stopping containerd) or when containerd exits on its own.
// ready is closed once containerd serves its API.
func Run(ctx context.Context, c Config, log logrus.FieldLogger, ready chan<- struct{}) error {
	if err := c.write(); err != nil {
		return err
	}
	stopStale(c, log)
	logf, err := os.OpenFile(c.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(c.Binary, "--config", c.ConfigPath())
	// containerd and its shims idle with a mostly static heap, as k1s does.
	cmd.Env = gotune.ChildEnv(os.Environ())
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group: a terminal's ^C goes to k1s, which stops containerd in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting containerd: %w", err)
	}
	_ = os.WriteFile(c.PIDPath(), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600)
	log.Infof("containerd started (PID %d), log %s", cmd.Process.Pid, c.LogPath())
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()

	go func() {
		if waitServing(ctx, c.Socket, exited) {
			close(ready)
		}
	}()

	select {
	case <-exited:
		os.Remove(c.PIDPath())
		return fmt.Errorf("containerd exited: %v (see %s)", waitErr, c.LogPath())
	case <-ctx.Done():
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		log.Warn("containerd did not stop within 20s; killing it")
		_ = cmd.Process.Kill()
		<-exited
	}
	os.Remove(c.PIDPath())
	return nil
}

// waitServing polls the socket until containerd answers (true), or
// containerd exits or ctx ends (false).
func waitServing(ctx context.Context, socket string, exited <-chan struct{}) bool {
	for {
		if Serving(ctx, socket) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-exited:
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Serving reports whether a containerd answers at socket.
func Serving(ctx context.Context, socket string) bool {
	if _, err := os.Stat(socket); err != nil {
		return false
	}
	cl, err := ctrd.New(socket, ctrd.WithTimeout(time.Second))
	if err != nil {
		return false
	}
	defer cl.Close()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ok, err := cl.IsServing(cctx)
	return err == nil && ok
}

// stopStale stops the containerd recorded in the PID file if it is still
// ours (its command line names our config), e.g. after k1s was killed.
func stopStale(c Config, log logrus.FieldLogger) {
	b, err := os.ReadFile(c.PIDPath())
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), c.ConfigPath()) {
		return
	}
	log.Warnf("stopping containerd (PID %d) left running by a previous k1s", pid)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 200; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}
