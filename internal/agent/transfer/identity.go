// Package transfer carries checkpoint images between agents.
//
// In direct mode the target node's agent fetches the images from the
// source node's agent over TLS, with each side proving who it is and no
// Secret involved:
//
//   - Every agent creates a self-signed certificate at start, keeps the key
//     in memory only and publishes the certificate's SHA-256 in its
//     NodeAgent (status.servingCertificateSHA256). The same certificate
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
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// certificateLifetime bounds how long an agent's certificate is valid. An
// agent gets a new certificate at every start, long before it expires.
const certificateLifetime = 365 * 24 * time.Hour

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
		Subject:      pkix.Name{CommonName: "lpm-agent:" + nodeName, Organization: []string{"lpm.dev"}},
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
