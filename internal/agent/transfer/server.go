package transfer

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/opencontainers/go-digest"
	"k8s.io/utils/clock"

	"github.com/lpm-dev/lpm/internal/agent/ckptimage"
)

// Peer is an authenticated client agent.
type Peer struct {
	// Username is the service account's user name.
	Username string
	// NodeName is the node of the pod the token is bound to.
	NodeName string
	// PodName is the name of that pod.
	PodName string
}

// Authenticator verifies a client's bearer token.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (*Peer, error)
}

// Fingerprints returns the certificate fingerprint a node's agent
// publishes in its NodeAgent.
type Fingerprints interface {
	Fingerprint(ctx context.Context, nodeName string) (string, error)
}

// Offer is what the source agent serves for one migration.
type Offer struct {
	// TargetNode is the only node whose agent may fetch the images.
	TargetNode string
	// Images are the checkpoint images by container name.
	Images map[string]*ckptimage.Image
}

// Catalog returns what this agent serves for a migration, or nil. It reads
// the PodMigration as it is now, so a migration that failed or moved to
// another target is no longer served.
type Catalog interface {
	Offer(ctx context.Context, migrationUID string) (*Offer, error)
}

// Server serves checkpoint images to target agents, as a read-only subset
// of the OCI distribution API: GET and HEAD of
// /v2/lpm/<migration UID>/<container>/manifests/<digest> and
// /v2/lpm/<migration UID>/<container>/blobs/<digest>. With WithBaseImages
// it also serves the base images of a migrated pod's containers under
// /v2/lpm-base/.
type Server struct {
	identity     *Identity
	auth         Authenticator
	fingerprints Fingerprints
	catalog      Catalog
	baseImages   BaseImages
	clock        clock.PassiveClock
	log          logr.Logger
}

// NewServer returns a server; Handler and TLSConfig give what an
// http.Server needs.
func NewServer(identity *Identity, auth Authenticator, fingerprints Fingerprints, catalog Catalog,
	clk clock.PassiveClock, log logr.Logger) *Server {
	return &Server{identity: identity, auth: auth, fingerprints: fingerprints, catalog: catalog, clock: clk,
		log: log}
}

// TLSConfig asks every client for a certificate; the handler checks it
// against the pin of the node the client's token names.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{s.identity.Certificate},
		ClientAuth:   tls.RequireAnyClientCert,
	}
}

// ListenAndServe serves on addr until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("failed to listen on %s: %w", addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s,
		TLSConfig:         s.TLSConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          nil,
	}
	errs := make(chan error, 1)
	go func() { errs <- srv.ServeTLS(ln, "", "") }()
	select {
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
		return nil
	case err := <-errs:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("transfer server failed: %w", err)
	}
}

// route is a parsed request path.
type route struct {
	migrationUID string
	container    string
	kind         string // "manifests" or "blobs"
	digest       digest.Digest
}

// parseRoute parses /v2/lpm/<uid>/<container>/<kind>/<digest>. It accepts
// only the names this server hands out: a UID, a DNS label and a sha256
// digest, so no path can name anything else.
func parseRoute(path string) (*route, error) {
	rest, ok := strings.CutPrefix(path, "/v2/lpm/")
	if !ok {
		return nil, errors.New("unknown path")
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 4 {
		return nil, errors.New("unknown path")
	}
	r := &route{migrationUID: parts[0], container: parts[1], kind: parts[2]}
	if !validUID(r.migrationUID) || !validLabel(r.container) {
		return nil, errors.New("invalid migration UID or container name")
	}
	if r.kind != "manifests" && r.kind != "blobs" {
		return nil, errors.New("unknown path")
	}
	d, err := digest.Parse(parts[3])
	if err != nil || d.Algorithm() != digest.SHA256 {
		return nil, errors.New("invalid digest")
	}
	r.digest = d
	return r, nil
}

func validUID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !isLowerAlnumOrDash(c) {
			return false
		}
	}
	return true
}

func isLowerAlnumOrDash(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-'
}

func validLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range s {
		if !isLowerAlnumOrDash(c) {
			return false
		}
	}
	return true
}

// ServeHTTP authenticates the client, authorises the request against the
// migration it names and serves the blob.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	peer, err := s.authenticate(r)
	if err != nil {
		s.log.Info("Rejected transfer request", "reason", err.Error(), "remote", r.RemoteAddr, "path", r.URL.Path)
		w.Header().Set("WWW-Authenticate", `Bearer realm="lpm-agent"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if r.URL.Path == "/v2/" || r.URL.Path == "/v2" {
		w.WriteHeader(http.StatusOK)
		return
	}
	if strings.HasPrefix(r.URL.Path, baseImagePrefix) {
		s.serveBaseImage(w, r, peer)
		return
	}
	rt, err := parseRoute(r.URL.Path)
	if err != nil {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	img, status := s.authorize(r.Context(), peer, rt)
	if status != http.StatusOK {
		http.Error(w, http.StatusText(status), status)
		return
	}
	s.serveBlob(w, r, img, rt)
}

func (s *Server) authenticate(r *http.Request) (*Peer, error) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		return nil, errors.New("no bearer token")
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil, errors.New("no client certificate")
	}
	peer, err := s.auth.Authenticate(r.Context(), token)
	if err != nil {
		return nil, fmt.Errorf("token rejected: %w", err)
	}
	pinned, err := s.fingerprints.Fingerprint(r.Context(), peer.NodeName)
	if err != nil {
		return nil, fmt.Errorf("no published certificate for node %q: %w", peer.NodeName, err)
	}
	raw := make([][]byte, 0, len(r.TLS.PeerCertificates))
	for _, c := range r.TLS.PeerCertificates {
		raw = append(raw, c.Raw)
	}
	if err := verifyPin(raw, pinned, s.clock.Now()); err != nil {
		return nil, fmt.Errorf("client certificate of node %q: %w", peer.NodeName, err)
	}
	return peer, nil
}

func (s *Server) authorize(ctx context.Context, peer *Peer, rt *route) (*ckptimage.Image, int) {
	offer, err := s.catalog.Offer(ctx, rt.migrationUID)
	if err != nil {
		s.log.Error(err, "Failed to look up migration for transfer", "migrationUID", rt.migrationUID)
		return nil, http.StatusServiceUnavailable
	}
	if offer == nil {
		return nil, http.StatusNotFound
	}
	if offer.TargetNode == "" || offer.TargetNode != peer.NodeName {
		s.log.Info("Rejected transfer request of another node's migration", "migrationUID", rt.migrationUID,
			"peerNode", peer.NodeName, "targetNode", offer.TargetNode)
		return nil, http.StatusForbidden
	}
	img, ok := offer.Images[rt.container]
	if !ok {
		return nil, http.StatusNotFound
	}
	return img, http.StatusOK
}

func (s *Server) serveBlob(w http.ResponseWriter, r *http.Request, img *ckptimage.Image, rt *route) {
	w.Header().Set("Docker-Content-Digest", rt.digest.String())
	if data, mediaType, ok := img.Blob(rt.digest); ok {
		if rt.kind == "manifests" && mediaType != "application/vnd.oci.image.index.v1+json" &&
			mediaType != "application/vnd.oci.image.manifest.v1+json" {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", string(mediaType))
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
		return
	}
	if rt.kind != "blobs" || rt.digest.String() != img.Layer.Digest.String() {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	f, err := img.OpenLayer()
	if err != nil {
		s.log.Error(err, "Failed to open checkpoint archive for transfer", "migrationUID", rt.migrationUID)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	defer func() { _ = f.Close() }()
	w.Header().Set("Content-Type", string(img.Layer.MediaType))
	w.Header().Set("Content-Length", strconv.FormatInt(img.Layer.Size, 10))
	// ServeContent answers Range requests, which a target uses to resume.
	http.ServeContent(w, r, "", time.Time{}, f)
}

// OfferSet is a Catalog of offers registered in memory, for callers that
// keep their own authority on which migration is served to whom.
type OfferSet struct {
	mu     sync.Mutex
	offers map[string]*Offer
}

// Set registers or replaces the offer of a migration.
func (o *OfferSet) Set(uid string, offer *Offer) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.offers == nil {
		o.offers = map[string]*Offer{}
	}
	o.offers[uid] = offer
}

// Remove withdraws the offer of a migration.
func (o *OfferSet) Remove(uid string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.offers, uid)
}

// Offer returns the offer of a migration, or nil.
func (o *OfferSet) Offer(_ context.Context, uid string) (*Offer, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.offers[uid], nil
}
