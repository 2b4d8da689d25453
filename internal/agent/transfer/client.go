package transfer

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"k8s.io/utils/clock"
)

// Client fetches checkpoint images from source agents.
type Client struct {
	identity  *Identity
	tokenFile string
	clock     clock.PassiveClock
}

// NewClient returns a client that presents the identity's certificate and
// the token in tokenFile, which it reads for every request because the
// kubelet rotates projected tokens.
func NewClient(identity *Identity, tokenFile string, clk clock.PassiveClock) *Client {
	return &Client{identity: identity, tokenFile: tokenFile, clock: clk}
}

// Fingerprint returns the fingerprint of the certificate the client
// presents, which source agents compare with the one its NodeAgent publishes.
func (c *Client) Fingerprint() string {
	return c.identity.Fingerprint
}

// Source returns the blob source of one container's image at a source
// agent. pinned is the source node's published certificate fingerprint.
func (c *Client) Source(endpoint, pinned, migrationUID, container string) *Source {
	tlsConfig := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{c.identity.Certificate},
		// The peer is authenticated by the pin below, not by a CA: its
		// certificate is self-signed and published in its NodeAgent.
		InsecureSkipVerify: true, //nolint:gosec // VerifyPeerCertificate pins the certificate.
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			return verifyPin(rawCerts, pinned, c.clock.Now())
		},
	}
	transport := &http.Transport{
		TLSClientConfig:       tlsConfig,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConnsPerHost:   2,
	}
	return &Source{
		client:    &http.Client{Transport: transport},
		base:      "https://" + endpoint + "/v2/lpm/" + migrationUID + "/" + container,
		tokenFile: c.tokenFile,
	}
}

// Source is a runtime.BlobSource backed by a source agent.
type Source struct {
	client    *http.Client
	base      string
	tokenFile string
}

// StatusError is an HTTP status other than success from a source agent.
type StatusError struct {
	Code int
	Body string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("source agent returned %d: %s", e.Code, e.Body)
}

// Open fetches a blob from offset on. The returned reader fails when the
// stream ends early, runs long, or (read from the start) does not match
// the descriptor's digest, so a truncated or altered blob is never
// delivered as complete.
func (s *Source) Open(ctx context.Context, desc ocispec.Descriptor, offset int64) (io.ReadCloser, error) {
	kind := "blobs"
	if desc.MediaType == ocispec.MediaTypeImageIndex || desc.MediaType == ocispec.MediaTypeImageManifest {
		kind = "manifests"
	}
	resp, err := s.get(ctx, s.base+"/"+kind+"/"+desc.Digest.String(), offset)
	if err != nil {
		return nil, fmt.Errorf("failed to fetch %s: %w", desc.Digest, err)
	}
	body, err := readBlobResponse(resp, desc, offset)
	if err != nil {
		_ = resp.Body.Close()
		return nil, err
	}
	return body, nil
}

// VerifiesDigest reports that Open verifies a blob read from the start
// against its digest and size, so an importer need not hash it again.
func (s *Source) VerifiesDigest() bool { return true }

// get sends an authenticated GET, asking for the bytes from offset on when
// offset is positive.
func (s *Source) get(ctx context.Context, url string, offset int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("failed to build transfer request: %w", err)
	}
	token, err := os.ReadFile(s.tokenFile)
	if err != nil {
		return nil, fmt.Errorf("failed to read the transfer token: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("failed to send transfer request: %w", err)
	}
	return resp, nil
}

// readBlobResponse checks a source agent's answer for a blob and returns a
// reader of exactly the bytes from offset to the blob's end.
func readBlobResponse(resp *http.Response, desc ocispec.Descriptor, offset int64) (io.ReadCloser, error) {
	if offset < 0 || (desc.Size >= 0 && offset > desc.Size) {
		return nil, fmt.Errorf("invalid offset %d for a blob of %d bytes", offset, desc.Size)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		// A server that ignores Range sends the whole blob: skip the part
		// the caller has.
		v := newVerifier(resp.Body, desc, 0)
		if _, err := io.CopyN(io.Discard, v, offset); err != nil {
			return nil, fmt.Errorf("failed to skip %d bytes of %s: %w", offset, desc.Digest, err)
		}
		return v, nil
	case resp.StatusCode == http.StatusPartialContent && offset > 0:
		start, err := contentRangeStart(resp.Header.Get("Content-Range"))
		if err != nil || start != offset {
			return nil, fmt.Errorf("source agent answered range %q, want bytes %d-", resp.Header.Get(
				"Content-Range"), offset)
		}
		return newVerifier(resp.Body, desc, offset), nil
	default:
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return nil, &StatusError{Code: resp.StatusCode, Body: strings.TrimSpace(string(data))}
	}
}

// contentRangeStart parses the start of "bytes <start>-<end>/<size>".
func contentRangeStart(header string) (int64, error) {
	rest, ok := strings.CutPrefix(header, "bytes ")
	if !ok {
		return 0, errors.New("not a byte range")
	}
	startText, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, errors.New("malformed byte range")
	}
	return strconv.ParseInt(startText, 10, 64)
}

// ErrTruncated reports a blob stream that ended before its size.
var ErrTruncated = errors.New("blob stream ended early")

// ErrTooLong reports a blob stream that ran past its size.
var ErrTooLong = errors.New("blob stream is longer than its size")

// ErrDigest reports a blob whose content does not match its digest.
var ErrDigest = errors.New("blob content does not match its digest")

// verifier passes a blob stream through, counting and (when the stream
// starts at the blob's start) hashing it, and turns its end into an error
// unless size and digest match.
type verifier struct {
	r      io.ReadCloser
	desc   ocispec.Descriptor
	n      int64
	hash   hash.Hash
	failed error
}

func newVerifier(r io.ReadCloser, desc ocispec.Descriptor, offset int64) *verifier {
	v := &verifier{r: r, desc: desc, n: offset}
	if offset == 0 && desc.Digest.Algorithm() == digest.SHA256 {
		v.hash = sha256.New()
	}
	return v
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.failed != nil {
		return 0, v.failed
	}
	if v.desc.Size >= 0 {
		// Read one byte more than the remainder to notice a long stream.
		if remaining := v.desc.Size - v.n + 1; int64(len(p)) > remaining {
			p = p[:remaining]
		}
	}
	n, err := v.r.Read(p)
	v.n += int64(n)
	if v.hash != nil {
		v.hash.Write(p[:n])
	}
	if v.desc.Size >= 0 && v.n > v.desc.Size {
		v.failed = fmt.Errorf("%w: %s has %d bytes", ErrTooLong, v.desc.Digest, v.desc.Size)
		return n - int(v.n-v.desc.Size), v.failed
	}
	if errors.Is(err, io.EOF) {
		v.failed = v.check()
		if v.failed != nil {
			return n, v.failed
		}
		return n, io.EOF
	}
	return n, err
}

func (v *verifier) check() error {
	if v.desc.Size >= 0 && v.n != v.desc.Size {
		return fmt.Errorf("%w: %s after %d of %d bytes", ErrTruncated, v.desc.Digest, v.n, v.desc.Size)
	}
	if v.hash != nil {
		if got := digest.NewDigest(digest.SHA256, v.hash); got != v.desc.Digest {
			return fmt.Errorf("%w: got %s, want %s", ErrDigest, got, v.desc.Digest)
		}
	}
	return nil
}

func (v *verifier) Close() error { return v.r.Close() }
