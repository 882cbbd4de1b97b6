// Package logging sets up, once per process, where logs go: k1s's own lines
// (logrus) go to the terminal; the embedded upstream components' output
// (klog, and kine's logrus lines) goes in full to a size-capped file under
// <data-dir>/logs, with only its warnings and errors on the terminal
// (everything with --debug). k1s's lines are copied into the same file, so
// the file is the complete record.
package logging

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"gopkg.in/natefinch/lumberjack.v2"
	"k8s.io/klog/v2"
)

// FileName is the log file under Options.Dir; rotated copies sit next to
// it as components-<UTC time>.log.
const FileName = "components.log"

// Rotation defaults: the file is rotated at 10 MiB and 4 rotated copies
// are kept, so the logs take at most 50 MiB.
const (
	DefaultMaxFileMiB = 10
	DefaultMaxBackups = 4
)

// Options say how verbose to be and where the log file goes.
type Options struct {
	// Debug puts k1s at debug level and klog at verbosity 2, and sends all
	// klog output to the terminal too.
	Debug bool
	// Dir holds the log file; created 0700 if missing. Logs can contain
	// sensitive detail, so the files are 0600.
	Dir string
	// Terminal receives what the user sees; os.Stderr if nil.
	Terminal io.Writer
	// MaxFileMiB and MaxBackups override the rotation defaults (tests).
	MaxFileMiB, MaxBackups int
}

// Logs is the set-up logging of this process.
type Logs struct {
	// Path is the log file.
	Path string
	file *closableFile
}

// Close flushes klog and closes the log file. Lines logged afterwards are
// no longer written to the file.
func (l *Logs) Close() error {
	klog.Flush()
	fileHook.set(nil, nil)
	return l.file.Close()
}

// Setup configures logrus and klog for the whole process and returns
// k1s's logger. Call Close on exit.
func Setup(o Options) (logrus.FieldLogger, *Logs, error) {
	if o.Dir == "" {
		return nil, nil, errors.New("logging: no log directory")
	}
	term := o.Terminal
	if term == nil {
		term = os.Stderr
	}
	maxMiB, backups := o.MaxFileMiB, o.MaxBackups
	if maxMiB <= 0 {
		maxMiB = DefaultMaxFileMiB
	}
	if backups <= 0 {
		backups = DefaultMaxBackups
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("cannot create log directory %s: %w", o.Dir, err)
	}
	// MkdirAll keeps an existing directory's mode; logs are private.
	if err := os.Chmod(o.Dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("log directory %s: %w", o.Dir, err)
	}
	path := filepath.Join(o.Dir, FileName)
	// The rotating writer keeps an existing file's mode: make it private too.
	if err := os.Chmod(path, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("log file %s: %w", path, err)
	}
	// The rotating writer creates new files 0600.
	file := &closableFile{w: &lumberjack.Logger{Filename: path, MaxSize: maxMiB, MaxBackups: backups}}

	logrus.SetOutput(term)
	logrus.SetFormatter(&termFormatter{
		Formatter: &logrus.TextFormatter{FullTimestamp: true, TimestampFormat: time.RFC3339},
		debug:     o.Debug,
	})
	logrus.SetLevel(logrus.InfoLevel)
	if o.Debug {
		logrus.SetLevel(logrus.DebugLevel)
	}
	fileHook.set(file, &logrus.TextFormatter{FullTimestamp: true, TimestampFormat: time.RFC3339, DisableColors: true})
	hookOnce.Do(func() { logrus.AddHook(fileHook) })

	if err := setupKlog(o.Debug, file, term); err != nil {
		return nil, nil, err
	}
	return logrus.WithField("component", "k1s"), &Logs{Path: path, file: file}, nil
}

// setupKlog sends each severity to its writer once (one_output), never
// through klog's own stderr path except for FATAL, which klog itself
// prints to stderr with the stacks before exiting.
func setupKlog(debug bool, file, term io.Writer) error {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	v := "0"
	if debug {
		v = "2"
	}
	for name, value := range map[string]string{
		"v":               v,
		"logtostderr":     "false",
		"alsologtostderr": "false",
		"one_output":      "true",
		"stderrthreshold": "FATAL",
	} {
		if err := fs.Set(name, value); err != nil {
			return fmt.Errorf("klog flag %s: %w", name, err)
		}
	}
	both := tee{term, file}
	info := file
	warning := io.Writer(tee{quiet{term}, file})
	if debug {
		info, warning = both, both
	}
	klog.SetOutputBySeverity("INFO", info)
	klog.SetOutputBySeverity("WARNING", warning)
	klog.SetOutputBySeverity("ERROR", both)
	klog.SetOutputBySeverity("FATAL", file)
	return nil
}

// termFormatter keeps kine's INFO lines (the only logrus lines without a
// component field: k1s's loggers all have one) off the terminal unless
// debugging, like the other upstream components' INFO lines; the file
// hook still records them.
type termFormatter struct {
	logrus.Formatter
	debug bool
}

func (f *termFormatter) Format(e *logrus.Entry) ([]byte, error) {
	if _, ok := e.Data["component"]; !ok && !f.debug && e.Level >= logrus.InfoLevel {
		return nil, nil // logrus writes the empty line as nothing
	}
	return f.Formatter.Format(e)
}

// quiet keeps off the terminal the warnings that come by the dozen and
// need no action: the apiserver's "Skipping API <group/version> because it
// has no resources", one per disabled built-in API version (33 lines in
// v1.37) at every start, and gRPC's transport chatter ("[core] … transport
// is closing"), some 60 lines at every stop as the apiserver's datastore
// connections close. The file keeps them; a datastore that really fails
// stops k1s with an error naming it.
type quiet struct{ w io.Writer }

func (q quiet) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("] Skipping API ")) && bytes.Contains(p, []byte(" because it has no resources")) {
		return len(p), nil
	}
	if bytes.Contains(p, []byte("] [core] ")) {
		return len(p), nil
	}
	return q.w.Write(p)
}

// tee writes to every writer even if one fails (io.MultiWriter stops at the
// first error): a full disk must not keep errors off the terminal.
type tee []io.Writer

func (t tee) Write(p []byte) (int, error) {
	var first error
	for _, w := range t {
		if _, err := w.Write(p); err != nil && first == nil {
			first = err
		}
	}
	return len(p), first
}

// closableFile drops writes once closed: component goroutines may still
// log while the process exits, and the rotating writer would reopen the file.
type closableFile struct {
	mu     sync.Mutex
	w      *lumberjack.Logger
	closed bool
}

func (f *closableFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return len(p), nil
	}
	return f.w.Write(p)
}

func (f *closableFile) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	return f.w.Close()
}

// hook copies every logrus entry (k1s's and kine's) into the log file.
type hook struct {
	mu  sync.Mutex
	w   io.Writer
	fmt logrus.Formatter
}

var (
	fileHook = &hook{}
	hookOnce sync.Once
)

func (h *hook) set(w io.Writer, f logrus.Formatter) {
	h.mu.Lock()
	h.w, h.fmt = w, f
	h.mu.Unlock()
}

func (h *hook) Levels() []logrus.Level { return logrus.AllLevels }

func (h *hook) Fire(e *logrus.Entry) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.w == nil {
		return nil
	}
	b, err := h.fmt.Format(e)
	if err != nil {
		return err
	}
	_, err = h.w.Write(b)
	return err
}
