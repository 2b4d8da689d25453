// Package pki issues the lab's certificates: one CA that signs the
// kube-apiserver's serving certificate, every component's client
// certificate, and each kubelet's serving certificate, so clients verify
// the kubelets against the same CA. Keys are ECDSA P-256, written with
// mode 0600.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Validity is how long the lab's certificates are valid.
const Validity = 365 * 24 * time.Hour

// CA is a certificate authority whose files live in a directory.
type CA struct {
	Dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// Cert describes a certificate to issue.
type Cert struct {
	// Name is the file name stem: Name.crt and Name.key.
	Name          string
	CommonName    string
	Organizations []string
	DNSNames      []string
	IPs           []net.IP
	Client        bool
	Server        bool
}

// CertFile and KeyFile return the paths of an issued certificate's files.
func (ca *CA) CertFile(name string) string { return filepath.Join(ca.Dir, name+".crt") }

// KeyFile returns the path of an issued certificate's key.
func (ca *CA) KeyFile(name string) string { return filepath.Join(ca.Dir, name+".key") }

// NewCA creates a CA in dir, replacing any CA there.
func NewCA(dir, commonName string, now time.Time) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create PKI directory: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("failed to create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	ca := &CA{Dir: dir, cert: cert, key: key}
	if err := writeCertAndKey(ca.CertFile("ca"), ca.KeyFile("ca"), der, key); err != nil {
		return nil, err
	}
	return ca, nil
}

// LoadCA reads the CA that NewCA wrote to dir.
func LoadCA(dir string) (*CA, error) {
	ca := &CA{Dir: dir}
	certPEM, err := os.ReadFile(ca.CertFile("ca"))
	if err != nil {
		return nil, fmt.Errorf("failed to read CA certificate: %w", err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return nil, errors.New("invalid CA certificate: no PEM block")
	}
	if ca.cert, err = x509.ParseCertificate(block.Bytes); err != nil {
		return nil, fmt.Errorf("invalid CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(ca.KeyFile("ca"))
	if err != nil {
		return nil, fmt.Errorf("failed to read CA key: %w", err)
	}
	block, _ = pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("invalid CA key: no PEM block")
	}
	if ca.key, err = x509.ParseECPrivateKey(block.Bytes); err != nil {
		return nil, fmt.Errorf("invalid CA key: %w", err)
	}
	return ca, nil
}

// Issue creates a key and a certificate signed by the CA.
func (ca *CA) Issue(c Cert, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: c.CommonName, Organization: c.Organizations},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(Validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		DNSNames:     c.DNSNames,
		IPAddresses:  c.IPs,
	}
	if c.Client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	if c.Server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return fmt.Errorf("failed to issue certificate %s: %w", c.Name, err)
	}
	return writeCertAndKey(ca.CertFile(c.Name), ca.KeyFile(c.Name), der, key)
}

// WriteServiceAccountKey writes the key pair that signs service-account
// tokens: name.key (private) and name.pub (public).
func (ca *CA) WriteServiceAccountKey(name string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(ca.Dir, name+".key"), "EC PRIVATE KEY", keyDER, 0o600); err != nil {
		return err
	}
	return writePEM(filepath.Join(ca.Dir, name+".pub"), "PUBLIC KEY", pubDER, 0o644)
}

func writeCertAndKey(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePEM(keyPath, "EC PRIVATE KEY", keyDER, 0o600); err != nil {
		return err
	}
	return writePEM(certPath, "CERTIFICATE", der, 0o644)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	data := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, data, mode); err != nil {
		return fmt.Errorf("failed to write %s: %w", path, err)
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n
}

// Kubeconfig returns a kubeconfig that authenticates with a client
// certificate, with file paths as given.
func Kubeconfig(server, caFile, certFile, keyFile string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: lpm-lab
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: user
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: lpm-lab
  context:
    cluster: lpm-lab
    user: user
current-context: lpm-lab
`, server, caFile, certFile, keyFile)
}
