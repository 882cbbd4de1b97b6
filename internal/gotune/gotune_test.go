package gotune

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestApply(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want int // GC percent set, -1 for none
	}{
		{"nothing set", nil, GCPercent},
		{"GOGC set", map[string]string{"GOGC": "200"}, -1},
		{"GOGC off", map[string]string{"GOGC": "off"}, -1},
		{"GOMEMLIMIT set", map[string]string{"GOMEMLIMIT": "1GiB"}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := -1
			old := setGCPercent
			setGCPercent = func(p int) int { got = p; return 100 }
			defer func() { setGCPercent = old }()
			note := Apply(func(k string) string { return tc.env[k] })
			if got != tc.want {
				t.Errorf("GC percent set to %d, want %d", got, tc.want)
			}
			if tc.want < 0 && !strings.Contains(note, "environment") {
				t.Errorf("note %q does not say the environment decides", note)
			}
			if tc.want >= 0 && !strings.Contains(note, fmt.Sprintf("GOGC=%d", GCPercent)) {
				t.Errorf("note %q does not name the GOGC k1s set", note)
			}
		})
	}
}

func TestChildEnv(t *testing.T) {
	base := []string{"PATH=/usr/bin", "HOME=/root"}
	got := ChildEnv(base)
	if want := append(slices.Clone(base), fmt.Sprintf("GOGC=%d", GCPercent)); !slices.Equal(got, want) {
		t.Errorf("ChildEnv(%q) = %q, want %q", base, got, want)
	}
	if len(base) != 2 {
		t.Errorf("ChildEnv changed its input to %q", base)
	}
	for _, set := range []string{"GOGC=200", "GOMEMLIMIT=512MiB"} {
		env := append(slices.Clone(base), set)
		if got := ChildEnv(env); !slices.Equal(got, env) {
			t.Errorf("with %s: ChildEnv = %q, want it unchanged", set, got)
		}
	}
}
