package cli

import (
	"reflect"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/k1s-io/k1s/internal/config"
)

// bound lists the addresses the binder writes flags to.
func bound(b *binder) map[uintptr]string {
	m := map[uintptr]string{}
	for _, f := range b.flags {
		switch f := f.(type) {
		case *cli.StringFlag:
			m[reflect.ValueOf(f.Destination).Pointer()] = f.Name
		case *cli.BoolFlag:
			m[reflect.ValueOf(f.Destination).Pointer()] = f.Name
		case *cli.IntFlag:
			m[reflect.ValueOf(f.Destination).Pointer()] = f.Name
		case *cli.Int64Flag:
			m[reflect.ValueOf(f.Destination).Pointer()] = f.Name
		case *cli.DurationFlag:
			m[reflect.ValueOf(f.Destination).Pointer()] = f.Name
		}
	}
	for _, s := range b.slices {
		m[reflect.ValueOf(s.dst).Pointer()] = s.name
	}
	return m
}

// requireAllBound fails for every field of the struct v points to that
// no flag sets.
func requireAllBound(t *testing.T, what string, b *binder, v any) {
	t.Helper()
	m := bound(b)
	rv := reflect.ValueOf(v).Elem()
	for i := 0; i < rv.NumField(); i++ {
		if _, ok := m[rv.Field(i).Addr().Pointer()]; !ok {
			t.Errorf("%s: field %s has no flag", what, rv.Type().Field(i).Name)
		}
	}
}

// A node flag is declared once (nodeFlags) and reaches both commands;
// a NodeOptions field without a flag fails here.
func TestEveryNodeOptionHasAFlagInServerAndAgent(t *testing.T) {
	s := &config.Server{}
	requireAllBound(t, "server", serverFlags(s), &s.NodeOptions)
	a := &config.Agent{}
	requireAllBound(t, "agent", agentFlags(a), &a.NodeOptions)
}

func TestEveryClusterSettingHasAServerFlag(t *testing.T) {
	s := &config.Server{}
	requireAllBound(t, "server", serverFlags(s), &s.Cluster)
}

// The agent takes no cluster flag: it receives the cluster's settings.
func TestAgentHasNoClusterFlags(t *testing.T) {
	names := map[string]bool{}
	for _, f := range agentFlags(&config.Agent{}).flags {
		names[f.Names()[0]] = true
	}
	s := &config.Server{}
	m := bound(serverFlags(s))
	rv := reflect.ValueOf(&s.Cluster).Elem()
	for i := 0; i < rv.NumField(); i++ {
		if n := m[rv.Field(i).Addr().Pointer()]; names[n] {
			t.Errorf("agent declares cluster flag --%s", n)
		}
	}
}
