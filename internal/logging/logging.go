// Package logging sets up k1s's own log (logrus) and the verbosity of the
// embedded Kubernetes components (klog), once per process.
package logging

import (
	"flag"
	"os"
	"time"

	"github.com/sirupsen/logrus"
	"k8s.io/klog/v2"
)

// Setup configures both loggers and returns k1s's own.
func Setup(debug bool) logrus.FieldLogger {
	logrus.SetOutput(os.Stderr)
	logrus.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: time.RFC3339})
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	v := "0"
	if debug {
		logrus.SetLevel(logrus.DebugLevel)
		v = "2"
	}
	_ = fs.Set("v", v)
	return logrus.WithField("component", "k1s")
}
