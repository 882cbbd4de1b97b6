package selfsigned

import (
	"crypto/x509"
	"net"
	"slices"
	"testing"
	"time"
)

func TestNew(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	c, err := New("k1s-test", []string{"10.0.0.7", "", "dash.example"}, now, 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	l := c.Leaf
	if l.Subject.CommonName != "k1s-test" || !l.NotAfter.Equal(now.Add(365*24*time.Hour).Truncate(time.Second)) || !l.NotBefore.Before(now) {
		t.Fatalf("subject %s, valid %s – %s", l.Subject, l.NotBefore, l.NotAfter)
	}
	if !slices.Equal(l.DNSNames, []string{"dash.example"}) || len(l.IPAddresses) != 1 || !l.IPAddresses[0].Equal(net.ParseIP("10.0.0.7")) {
		t.Fatalf("names %v, IPs %v", l.DNSNames, l.IPAddresses)
	}
	// It verifies against itself for the names it carries, and for no other.
	pool := x509.NewCertPool()
	pool.AddCert(l)
	opts := x509.VerifyOptions{Roots: pool, CurrentTime: now, DNSName: "dash.example"}
	if _, err := l.Verify(opts); err != nil {
		t.Fatalf("verify for its own name: %v", err)
	}
	opts.DNSName = "other.example"
	if _, err := l.Verify(opts); err == nil {
		t.Fatal("verified for a name it does not carry")
	}
	d, err := New("k1s-test", nil, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if d.Leaf.SerialNumber.Cmp(l.SerialNumber) == 0 {
		t.Fatal("two certificates with one serial")
	}
}
