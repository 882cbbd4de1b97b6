package harness

import (
	"net"
	"strconv"
	"testing"
)

// FreePorts gives distinct ports below the ephemeral and NodePort ranges
// that can be bound when it returns.
func TestFreePorts(t *testing.T) {
	for round := 0; round < 20; round++ {
		ports, err := FreePorts(3)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[int]bool{}
		for _, p := range ports {
			if seen[p] {
				t.Fatalf("round %d: port %d given twice: %v", round, p, ports)
			}
			seen[p] = true
			if p < 20000 || p >= 30000 {
				t.Fatalf("port %d outside 20000–29999", p)
			}
			l, err := net.Listen("tcp", ":"+strconv.Itoa(p))
			if err != nil {
				t.Fatalf("port %d is not free after FreePorts returned: %v", p, err)
			}
			l.Close()
		}
	}
}
