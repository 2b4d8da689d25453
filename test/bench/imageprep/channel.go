package imageprep

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"k8s.io/utils/clock"

	"github.com/lpm-dev/lpm/internal/agent/ckptimage"
	"github.com/lpm-dev/lpm/internal/agent/transfer"
)

// benchToken is the only bearer token the channel's server accepts; the
// TokenReview of a real agent is not part of what is measured.
const benchToken = "lpm-bench"

// benchPeers authenticates benchToken as the target node's agent.
type benchPeers struct{}

func (benchPeers) Authenticate(_ context.Context, token string) (*transfer.Peer, error) {
	if token != benchToken {
		return nil, errors.New("unknown token")
	}
	return &transfer.Peer{Username: "system:serviceaccount:lpm-system:lpm-agent", NodeName: "target"}, nil
}

// pinnedFingerprints returns the target's certificate fingerprint, as a
// NodeAgent publishes it.
type pinnedFingerprints map[string]string

func (p pinnedFingerprints) Fingerprint(_ context.Context, node string) (string, error) {
	if fp, ok := p[node]; ok {
		return fp, nil
	}
	return "", fmt.Errorf("no certificate published for node %q", node)
}

// Channel is lpm's direct transfer server, serving one image on a
// loopback port, and a client that fetches from it as the target agent
// does: TLS 1.3 with pinned certificates, a bearer token, and every blob
// verified by digest as it streams.
type Channel struct {
	Source   *transfer.Source
	srv      *http.Server
	tokenDir string
}

// StartChannel serves img on 127.0.0.1.
func StartChannel(img *ckptimage.Image, id string) (*Channel, error) {
	clk := clock.RealClock{}
	source, err := transfer.NewIdentity("source", clk.Now())
	if err != nil {
		return nil, err
	}
	target, err := transfer.NewIdentity("target", clk.Now())
	if err != nil {
		return nil, err
	}
	offers := &transfer.OfferSet{}
	offers.Set(id, &transfer.Offer{TargetNode: "target", Images: map[string]*ckptimage.Image{"c": img}})
	server := transfer.NewServer(source, benchPeers{}, pinnedFingerprints{"target": target.Fingerprint}, offers,
		clk, logr.Discard())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: server, TLSConfig: server.TLSConfig(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	dir, err := os.MkdirTemp("", "lpm-bench-token-")
	if err != nil {
		_ = srv.Close()
		return nil, err
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(benchToken), 0o600); err != nil {
		_ = srv.Close()
		return nil, err
	}
	src := transfer.NewClient(target, tokenFile, clk).Source(ln.Addr().String(), source.Fingerprint, id, "c")
	return &Channel{Source: src, srv: srv, tokenDir: dir}, nil
}

// Close stops the server.
func (c *Channel) Close() {
	_ = c.srv.Close()
	_ = os.RemoveAll(c.tokenDir)
}

// ReadLayer fetches the image's layer through the channel and discards it,
// and returns the time and the bytes read.
func (c *Channel) ReadLayer(ctx context.Context, img *ckptimage.Image) (time.Duration, int64, error) {
	start := time.Now()
	layer := ocispec.Descriptor{MediaType: string(img.Layer.MediaType), Size: img.Layer.Size,
		Digest: digest.Digest(img.Layer.Digest.String())}
	rc, err := c.Source.Open(ctx, layer, 0)
	if err != nil {
		return 0, 0, err
	}
	n, err := io.Copy(io.Discard, rc)
	closeErr := rc.Close()
	if err == nil {
		err = closeErr
	}
	return time.Since(start), n, err
}

// PlainCopy sends the file at path over a plain TCP connection on
// loopback to a reader that discards it, and returns the time and bytes.
func PlainCopy(ctx context.Context, path string) (time.Duration, int64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = ln.Close() }()
	sent := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			sent <- err
			return
		}
		defer func() { _ = conn.Close() }()
		f, err := os.Open(path)
		if err != nil {
			sent <- err
			return
		}
		defer func() { _ = f.Close() }()
		_, err = io.Copy(conn, f)
		sent <- err
	}()

	start := time.Now()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return 0, 0, err
	}
	n, err := io.Copy(io.Discard, conn)
	_ = conn.Close()
	elapsed := time.Since(start)
	if err != nil {
		return 0, 0, err
	}
	if err := <-sent; err != nil {
		return 0, 0, err
	}
	return elapsed, n, nil
}
