// Package datadir owns a node's data directory as a whole: `k1s server` and
// `k1s agent` alike check that the path is usable and hold an exclusive lock
// on it for the life of the process, so two k1s processes never share one
// SQLite file, one PKI or one node's state.
package datadir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Lock is a held lock on a data dir.
type Lock struct {
	f *os.File
}

// Acquire checks dir and takes its lock without waiting. It creates dir and
// its lock file if needed, but writes nothing else and changes no existing file.
func Acquire(dir string) (*Lock, error) {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("cannot create data dir %s: %w", dir, err)
		}
	case err != nil:
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	case !st.IsDir():
		return nil, fmt.Errorf("data dir %s is a file, not a directory: pass another --data-dir or move the file away", dir)
	}
	path := filepath.Join(dir, ".k1s.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cannot open lock file in data dir: %w", err)
	}
	// An fcntl lock lets us name the holder's PID in the error.
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0}
	if err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk); err != nil {
		holder := unix.Flock_t{Type: unix.F_WRLCK}
		who := ""
		if unix.FcntlFlock(f.Fd(), unix.F_GETLK, &holder) == nil && holder.Type != unix.F_UNLCK {
			who = fmt.Sprintf(" (PID %d)", holder.Pid)
		}
		f.Close()
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("data dir %s is in use by another k1s server or agent%s: stop it first, or pass another --data-dir", dir, who)
		}
		return nil, fmt.Errorf("cannot lock data dir %s: %w", dir, err)
	}
	return &Lock{f: f}, nil
}

// Release drops the lock.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor releases the fcntl lock
	l.f = nil
	return err
}
