package nodebin

import (
	"path/filepath"
	"strconv"
	"testing"
)

// BenchmarkInstallCold is a node's first start: every helper written to
// an empty folder (`go test -run '^$' -bench InstallCold ./internal/nodebin`).
func BenchmarkInstallCold(b *testing.B) {
	if _, err := files.Open(binDir + "/" + archive); err != nil {
		b.Skip("node binaries not built (run make nodebin)")
	}
	root := b.TempDir()
	for i := 0; i < b.N; i++ {
		if err := Install(filepath.Join(root, strconv.Itoa(i))); err != nil {
			b.Fatal(err)
		}
	}
}
