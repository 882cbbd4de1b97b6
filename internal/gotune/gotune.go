// Package gotune sets the Go garbage collector of the long-running k1s
// commands (server, agent), and of the Go programs they start (containerd,
// which passes its environment on to the shims), for a small idle
// footprint: the components keep a large, mostly static heap, so the
// collector's default headroom (GOGC=100, as much garbage again as live
// heap) is mostly memory held for nothing. A GOGC or GOMEMLIMIT in the
// environment is the user's choice and wins.
package gotune

import (
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
)

// GCPercent is k1s's default GOGC for server, agent and containerd.
const GCPercent = 50

// setGCPercent is runtime/debug.SetGCPercent, replaced in tests.
var setGCPercent = debug.SetGCPercent

// Apply sets the collector unless the environment (getenv) holds GOGC or
// GOMEMLIMIT, and says in one line what the collector runs with.
func Apply(getenv func(string) string) string {
	gogc, limit := getenv("GOGC"), getenv("GOMEMLIMIT")
	if gogc != "" || limit != "" {
		return fmt.Sprintf("Go garbage collector as the environment sets it (GOGC=%q, GOMEMLIMIT=%q)", gogc, limit)
	}
	setGCPercent(GCPercent)
	return fmt.Sprintf("Go garbage collector: GOGC=%d (k1s's default; set GOGC or GOMEMLIMIT to choose)", GCPercent)
}

// ChildEnv is environ (os.Environ()) for a long-running Go child: with
// GOGC=GCPercent added unless environ already holds GOGC or GOMEMLIMIT.
func ChildEnv(environ []string) []string {
	for _, e := range environ {
		if strings.HasPrefix(e, "GOGC=") || strings.HasPrefix(e, "GOMEMLIMIT=") {
			return environ
		}
	}
	return append(environ[:len(environ):len(environ)], "GOGC="+strconv.Itoa(GCPercent))
}
