package pki

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"testing"
	"time"
)

func TestIssuedCertificatesVerify(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	dir := t.TempDir()
	ca, err := NewCA(dir, "lpm-lab-ca", now)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Issue(Cert{Name: "kubelet", CommonName: "system:node:node-a", Organizations: []string{"system:nodes"},
		DNSNames: []string{"node-a"}, IPs: []net.IP{net.ParseIP("10.200.0.10")}, Server: true}, now); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := loaded.Issue(Cert{Name: "admin", CommonName: "admin", Organizations: []string{"system:masters"},
		Client: true}, now); err != nil {
		t.Fatal(err)
	}

	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(ca.CertFile("ca"))
	pool.AppendCertsFromPEM(caPEM)
	for _, tc := range []struct {
		name    string
		usage   x509.ExtKeyUsage
		dnsName string
	}{
		{name: "kubelet", usage: x509.ExtKeyUsageServerAuth, dnsName: "10.200.0.10"},
		{name: "admin", usage: x509.ExtKeyUsageClientAuth},
	} {
		pair, err := tls.LoadX509KeyPair(ca.CertFile(tc.name), ca.KeyFile(tc.name))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		cert, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		opts := x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{tc.usage}, DNSName: tc.dnsName,
			CurrentTime: now}
		if _, err := cert.Verify(opts); err != nil {
			t.Errorf("%s does not verify: %v", tc.name, err)
		}
		if st, _ := os.Stat(ca.KeyFile(tc.name)); st.Mode().Perm() != 0o600 {
			t.Errorf("%s key mode = %v, want 0600", tc.name, st.Mode().Perm())
		}
	}
}
