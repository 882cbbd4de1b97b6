package pki

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// CertInfo describes one certificate file k1s manages.
type CertInfo struct {
	Path     string    `json:"path"`
	Kind     string    `json:"kind"` // ca, serving, client
	Subject  string    `json:"subject"`
	Issuer   string    `json:"issuer"`
	SANs     []string  `json:"sans,omitempty"`
	NotAfter time.Time `json:"notAfter"`
	DaysLeft int       `json:"daysLeft"`
}

// Inventory lists the certificates under each of dirs (a server's tls
// dir, a node's pki dir; missing ones are skipped), sorted by path. A
// kubeconfig's embedded client certificate is the .crt beside it, so the
// .crt files are the whole list.
func Inventory(now time.Time, dirs ...string) ([]CertInfo, error) {
	var out []CertInfo
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".crt") {
				continue
			}
			p := filepath.Join(dir, e.Name())
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			block, _ := pem.Decode(data)
			if block == nil || block.Type != "CERTIFICATE" {
				return nil, fmt.Errorf("%s holds no PEM certificate", p)
			}
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			out = append(out, describe(p, c, now))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

func describe(path string, c *x509.Certificate, now time.Time) CertInfo {
	info := CertInfo{Path: path, Subject: c.Subject.String(), Issuer: c.Issuer.String(), NotAfter: c.NotAfter.UTC(),
		DaysLeft: int(c.NotAfter.Sub(now).Hours() / 24)}
	switch {
	case c.IsCA:
		info.Kind = "ca"
	case hasUsage(c, x509.ExtKeyUsageServerAuth):
		info.Kind = "serving"
	default:
		info.Kind = "client"
	}
	info.SANs = append(info.SANs, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		info.SANs = append(info.SANs, ip.String())
	}
	return info
}

func hasUsage(c *x509.Certificate, u x509.ExtKeyUsage) bool {
	for _, x := range c.ExtKeyUsage {
		if x == u {
			return true
		}
	}
	return false
}
