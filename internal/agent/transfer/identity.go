// Package transfer carries checkpoint images between agents.
//
// In direct mode the target node's agent fetches the images from the
// source node's agent over TLS, with each side proving who it is and no
// Secret involved:
//
//   - Every agent has a self-signed certificate, kept with its key in one
//     file of mode 0600 in the agent's state directory so that it outlives
//     a restart, and publishes the certificate's SHA-256 in its NodeAgent
//     (status.servingCertificateSHA256). The same certificate
//     serves and, as a client certificate, identifies the agent to peers.
//     A client pins the server's certificate to the source node's
//     published digest, and the server pins the client's to the target
//     node's.
//   - The client also sends its pod-bound, projected service-account token
//     of a dedicated audience. The server verifies it with a TokenReview:
//     the token must belong to the agents' service account and be bound to
//     a pod on the migration's status.targetNode.
//
// Only the target agent of a migration can fetch that migration's images,
// and a token a peer captured is useless without the client certificate's
// key. docs/security.md describes the design and its threat model.
//
// In registry mode the source agent pushes to the migration's repository
// and the target node's runtime pulls.
package transfer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// certificateLifetime bounds how long an agent's certificate is valid.
const certificateLifetime = 365 * 24 * time.Hour

// RenewBefore is how long before its expiry a kept certificate is replaced
// at the agent's start.
//
// NOTE: the certificate is renewed only at start. An agent that runs longer
// than certificateLifetime minus RenewBefore without a restart serves an
// expired certificate, which peers reject.
const RenewBefore = 30 * 24 * time.Hour

// IdentityFile is the name of the file in the agent's state directory that
// keeps the certificate and its key as PEM blocks.
const IdentityFile = "transfer-identity.pem"

// commonNamePrefix starts the subject common name of an agent's certificate,
// followed by the node's name.
const commonNamePrefix = "lpm-agent:"

// Identity is an agent's transfer certificate and key.
type Identity struct {
	// Certificate holds the certificate and its in-memory key.
	Certificate tls.Certificate
	// Fingerprint is the hex SHA-256 of the certificate's DER form.
	Fingerprint string
}

// NewIdentity creates a self-signed ECDSA P-256 certificate for an agent
// of the named node, valid from now on.
func NewIdentity(nodeName string, now time.Time) (*Identity, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("failed to generate transfer key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("failed to generate certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonNamePrefix + nodeName, Organization: []string{"lpm.dev"}},
		// Peers pin the certificate itself, so names matter only to humans.
		DNSNames:    []string{nodeName},
		NotBefore:   now.Add(-5 * time.Minute),
		NotAfter:    now.Add(certificateLifetime),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("failed to create transfer certificate: %w", err)
	}
	return &Identity{
		Certificate: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		Fingerprint: Fingerprint(der),
	}, nil
}

// LoadIdentity reads the identity kept in dir by SaveIdentity. The error
// wraps os.ErrNotExist when none is kept. LoadIdentity also fails when the
// file is open to others than its owner, is not a certificate with its ECDSA
// key, names another node, or is not valid from now until RenewBefore later.
func LoadIdentity(dir, nodeName string, now time.Time) (*Identity, error) {
	path := filepath.Join(dir, IdentityFile)
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read transfer identity: %w", err)
	}

	if info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("transfer identity %s has mode %s, want 0600: its key may have been read",
			path, info.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read transfer identity: %w", err)
	}
	// The file holds both blocks: X509KeyPair takes the CERTIFICATE blocks
	// from the first argument and the PRIVATE KEY block from the second.
	pair, err := tls.X509KeyPair(data, data)
	if err != nil {
		return nil, fmt.Errorf("invalid transfer identity %s: %w", path, err)
	}
	if _, ok := pair.PrivateKey.(*ecdsa.PrivateKey); !ok || len(pair.Certificate) != 1 {
		return nil, fmt.Errorf("invalid transfer identity %s: want one certificate with an ECDSA key", path)
	}

	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("invalid transfer identity %s: %w", path, err)
	}
	if cert.Subject.CommonName != commonNamePrefix+nodeName {
		return nil, fmt.Errorf("transfer identity %s is for %q, not node %s", path, cert.Subject.CommonName,
			nodeName)
	}
	if now.Before(cert.NotBefore) || now.Add(RenewBefore).After(cert.NotAfter) {
		return nil, fmt.Errorf("transfer identity %s is valid from %s to %s, and renewed %s before expiry",
			path, cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339), RenewBefore)
	}
	return &Identity{Certificate: pair, Fingerprint: Fingerprint(pair.Certificate[0])}, nil
}

// SaveIdentity writes the identity's certificate and key to dir with mode
// 0600. It writes a temporary file and renames it, so a crash leaves either
// the old file or the new one.
func SaveIdentity(dir string, id *Identity) error {
	key, err := x509.MarshalPKCS8PrivateKey(id.Certificate.PrivateKey)
	if err != nil {
		return fmt.Errorf("failed to encode transfer key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: id.Certificate.Certificate[0]})
	data = append(data, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})...)

	tmp, err := os.CreateTemp(dir, IdentityFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("failed to write transfer identity: %w", err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("failed to write transfer identity: %w", err)
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("failed to write transfer identity: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, IdentityFile)); err != nil {
		return fmt.Errorf("failed to write transfer identity: %w", err)
	}
	return nil
}

// Fingerprint returns the hex SHA-256 digest of a certificate's DER form.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// ErrPinMismatch reports a peer certificate that is not the one its
// NodeAgent publishes.
var ErrPinMismatch = errors.New("peer certificate does not match the published fingerprint")

// verifyPin checks a presented certificate chain against the pinned hex
// digest. Only the leaf counts; a chain or a CA adds nothing to a pin.
func verifyPin(rawCerts [][]byte, pinned string, now time.Time) error {
	if len(rawCerts) == 0 {
		return errors.New("peer presented no certificate")
	}
	pinned = strings.ToLower(strings.TrimSpace(pinned))
	if len(pinned) != sha256.Size*2 {
		return fmt.Errorf("%w: the published fingerprint %q is not a SHA-256 digest", ErrPinMismatch, pinned)
	}
	got := Fingerprint(rawCerts[0])
	if subtle.ConstantTimeCompare([]byte(got), []byte(pinned)) != 1 {
		return fmt.Errorf("%w: got %s, want %s", ErrPinMismatch, got, pinned)
	}
	cert, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return fmt.Errorf("failed to parse peer certificate: %w", err)
	}
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return fmt.Errorf("peer certificate is valid from %s to %s only", cert.NotBefore, cert.NotAfter)
	}
	return nil
}
