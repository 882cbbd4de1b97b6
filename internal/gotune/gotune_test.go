package gotune

import (
	"fmt"
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
