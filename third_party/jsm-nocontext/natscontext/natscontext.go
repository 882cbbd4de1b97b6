// Package natscontext has the part of jsm.go's natscontext API that kine's
// NATS driver calls. k1s does not read NATS CLI context files: NewFromFile
// always fails and says what to use instead.
package natscontext

import (
	"fmt"

	"github.com/nats-io/nats.go"
)

// Context would be a NATS CLI context; k1s never makes one.
type Context struct{}

// Option configures a Context.
type Option func(*Context)

// NewFromFile fails: k1s leaves out context-file support to keep its
// binary free of jsm.go's expression engine.
func NewFromFile(filename string, opts ...Option) (*Context, error) {
	return nil, fmt.Errorf("NATS context file %q: k1s does not read NATS context files (contextFile=); "+
		"give the servers in the endpoint (nats://host:port) and credentials with the credsFile= option instead", filename)
}

// ServerURL is empty: no Context is ever made.
func (c *Context) ServerURL() string { return "" }

// NATSOptions returns opts unchanged: no Context is ever made.
func (c *Context) NATSOptions(opts ...nats.Option) ([]nats.Option, error) { return opts, nil }
