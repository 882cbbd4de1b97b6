package harness

import (
	"os"
	"path/filepath"
	"testing"
)

func TestUnfinishedNamesStepsWithoutReady(t *testing.T) {
	s := &Server{LogPath: filepath.Join(t.TempDir(), "k1s-0.log")}
	log := `time="x" level=info msg="step datastore: starting" component=k1s
time="x" level=info msg="step datastore: ready in 9ms" component=k1s
time="x" level=info msg="step addons: starting" component=k1s
time="x" level=info msg="step cni: starting" component=k1s
time="x" level=info msg="step addons: ready in 403ms" component=k1s
time="x" level=info msg="step node: starting" component=k1s
`
	if err := os.WriteFile(s.LogPath, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, want := s.Unfinished(), "cni, node"; got != want {
		t.Fatalf("Unfinished() = %q, want %q", got, want)
	}
}
