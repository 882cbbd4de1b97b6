package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/k1s-io/k1s/internal/atomicfile"
)

// StateRoot holds one directory per cluster (0700, root's): state.json,
// the token, the kubeconfig, and each node's dirs and log.
const StateRoot = "/var/lib/k1s-cluster"

// State is a cluster's state.json. Create records each thing here before
// it makes it, so Delete can remove whatever a killed create left.
type State struct {
	Plan    Plan
	Created time.Time
	// Phase is "creating" until create has finished, then "created".
	Phase string
	// MadeNetnsMount: /run/netns was not a mount point before this
	// cluster; the last namespace to go unmounts it again.
	MadeNetnsMount bool
	Procs          map[string]Proc // node name → its k1s process
	Rules          []Rule          // iptables rules, in insertion order
	Cgroups        []string        // directories created for cgroup roots
	// Kubeconfig is the file written for the user; Merged means the
	// cluster's entries were merged into it (delete removes only those).
	Kubeconfig string
	Merged     bool

	mu   sync.Mutex
	path string
}

// Proc identifies a process across PID reuse: PID and start time (clock
// ticks since boot, field 22 of /proc/PID/stat).
type Proc struct {
	PID   int
	Start uint64
}

// Rule is one iptables rule: table, chain and the rule spec.
type Rule struct {
	Table string
	Chain string
	Spec  []string
}

// Dir is a cluster's state dir.
func Dir(name string) string { return filepath.Join(StateRoot, name) }

// ErrNoCluster is returned for a name without state.
var ErrNoCluster = errors.New("no such cluster")

// LoadState reads a cluster's state.
func LoadState(name string) (*State, error) {
	path := filepath.Join(Dir(name), "state.json")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w %q (no %s; `k1s cluster list` shows the clusters)", ErrNoCluster, name, path)
	}
	if err != nil {
		return nil, err
	}
	s := &State{path: path}
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return s, nil
}

// Save writes the state atomically (0600).
func (s *State) Save() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(s.path, b, 0o600)
}

// record changes the state and saves it before the caller acts on it.
func (s *State) record(f func(*State)) error {
	s.mu.Lock()
	f(s)
	s.mu.Unlock()
	return s.Save()
}

// Names lists the clusters with a state dir.
func Names() ([]string, error) {
	entries, err := os.ReadDir(StateRoot)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && NameRE.MatchString(e.Name()) {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// lockRoot serialises creates and deletes on the host (subnet and prefix
// choice), until the returned func is called.
func lockRoot() (func(), error) {
	if err := os.MkdirAll(StateRoot, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(StateRoot, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}
