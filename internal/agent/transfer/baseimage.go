package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// baseImagePrefix starts the paths of base image requests:
// /v2/lpm-base/<namespace>/<migration>/<migration UID>/<container>/<kind>/<reference>,
// where kind is manifests or blobs and reference is a sha256 digest, or
// the tag "base" in manifests for the image's root.
const baseImagePrefix = "/v2/lpm-base/"

// BaseImageRootTag names, in a manifests request, the index or manifest the
// source node's image record targets.
const BaseImageRootTag = "base"

// ErrForbidden reports a request that the caller is not allowed to make.
var ErrForbidden = errors.New("forbidden")

// ErrNotFound reports a request for something this node does not serve.
var ErrNotFound = errors.New("not found")

// BaseImageRequest names the container whose base image a target agent
// requests, by its migration.
type BaseImageRequest struct {
	// Namespace and Name are the PodMigration's.
	Namespace string
	Name      string
	// MigrationUID is the PodMigration's UID.
	MigrationUID string
	// Container is a container of the migrated pod.
	Container string
}

// BaseImage is the content of a base image that a source agent serves.
type BaseImage struct {
	// Root is the index or manifest the image record targets.
	Root ocispec.Descriptor
	// Blobs are the only blobs served, by digest: the root, the manifest
	// the node runs, its config and its layers.
	Blobs map[digest.Digest]ocispec.Descriptor
	// Open opens a blob for reading at any offset.
	Open func(ctx context.Context, desc ocispec.Descriptor) (BlobReader, error)
}

// BlobReader reads a blob at any offset.
type BlobReader interface {
	io.ReaderAt
	io.Closer
	Size() int64
}

// BaseImages authorizes base image requests and finds the image. It
// returns an error wrapping ErrForbidden when the peer may not read the
// image, and ErrNotFound when this node does not hold it.
type BaseImages interface {
	BaseImage(ctx context.Context, peer *Peer, req BaseImageRequest) (*BaseImage, error)
}

// WithBaseImages makes the server serve base images to target agents that
// lack them, as the given authority allows. Without it such requests get
// 404.
func (s *Server) WithBaseImages(b BaseImages) *Server {
	s.baseImages = b
	return s
}

// baseImageRoute is a parsed base image request path.
type baseImageRoute struct {
	req       BaseImageRequest
	kind      string
	root      bool
	reference digest.Digest
}

// parseBaseImageRoute parses a path under baseImagePrefix. Like parseRoute
// it accepts only names Kubernetes allows and sha256 digests.
func parseBaseImageRoute(path string) (*baseImageRoute, error) {
	rest, ok := strings.CutPrefix(path, baseImagePrefix)
	if !ok {
		return nil, errors.New("unknown path")
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 6 {
		return nil, errors.New("unknown path")
	}
	r := &baseImageRoute{req: BaseImageRequest{Namespace: parts[0], Name: parts[1], MigrationUID: parts[2],
		Container: parts[3]}, kind: parts[4]}
	if !validLabel(r.req.Namespace) || !validSubdomain(r.req.Name) || !validUID(r.req.MigrationUID) ||
		!validLabel(r.req.Container) {
		return nil, errors.New("invalid namespace, migration, UID or container name")
	}
	if r.kind != "manifests" && r.kind != "blobs" {
		return nil, errors.New("unknown path")
	}
	if r.kind == "manifests" && parts[5] == BaseImageRootTag {
		r.root = true
		return r, nil
	}
	d, err := digest.Parse(parts[5])
	if err != nil || d.Algorithm() != digest.SHA256 {
		return nil, errors.New("invalid digest")
	}
	r.reference = d
	return r, nil
}

// validSubdomain accepts a DNS subdomain (RFC 1123), the form of a
// PodMigration's name.
func validSubdomain(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if !validLabel(label) {
			return false
		}
	}
	return true
}

// serveBaseImage authorizes a base image request of an authenticated peer
// and streams the blob. Every rejection is logged with the peer's node.
func (s *Server) serveBaseImage(w http.ResponseWriter, r *http.Request, peer *Peer) {
	rt, err := parseBaseImageRoute(r.URL.Path)
	if err != nil || s.baseImages == nil {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	log := s.log.WithValues("peerNode", peer.NodeName, "migration", rt.req.Namespace+"/"+rt.req.Name,
		"migrationUID", rt.req.MigrationUID, "container", rt.req.Container)
	img, err := s.baseImages.BaseImage(r.Context(), peer, rt.req)
	switch {
	case errors.Is(err, ErrForbidden):
		log.Info("Rejected base image request", "reason", err.Error(), "path", r.URL.Path)
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	case errors.Is(err, ErrNotFound):
		log.Info("Base image request for an image this node does not serve", "reason", err.Error())
		http.Error(w, "not found", http.StatusNotFound)
		return
	case err != nil:
		log.Error(err, "Failed to look up a base image for transfer")
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		return
	}

	desc := img.Root
	if !rt.root {
		var ok bool
		if desc, ok = img.Blobs[rt.reference]; !ok {
			log.Info("Rejected request for a blob outside the base image", "digest", rt.reference.String())
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
	}
	blob, err := img.Open(r.Context(), desc)
	if err != nil {
		log.Error(err, "Failed to open a base image blob", "digest", desc.Digest.String())
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	defer func() { _ = blob.Close() }()
	w.Header().Set("Docker-Content-Digest", desc.Digest.String())
	w.Header().Set("Content-Type", desc.MediaType)
	w.Header().Set("Content-Length", strconv.FormatInt(blob.Size(), 10))
	// ServeContent handles Range requests, which a target uses to resume.
	http.ServeContent(w, r, "", time.Time{}, io.NewSectionReader(blob, 0, blob.Size()))
}

// BaseImageSource returns the blob source of a container's base image at
// a source agent. pinned is the source node's published certificate
// fingerprint.
func (c *Client) BaseImageSource(endpoint, pinned string, req BaseImageRequest) *Source {
	src := c.Source(endpoint, pinned, req.MigrationUID, req.Container)
	src.base = "https://" + endpoint + baseImagePrefix + req.Namespace + "/" + req.Name + "/" + req.MigrationUID +
		"/" + req.Container
	return src
}

// maxRootBytes bounds the index or manifest read as a base image's root.
const maxRootBytes = 4 << 20

// Root fetches the index or manifest that the source node's image record
// targets, and checks it against the digest the source sends with it.
// want, when set, is the digest the caller expects.
func (s *Source) Root(ctx context.Context, want digest.Digest) (ocispec.Descriptor, []byte, error) {
	resp, err := s.get(ctx, s.base+"/manifests/"+BaseImageRootTag, 0)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return ocispec.Descriptor{}, nil, &StatusError{Code: resp.StatusCode, Body: strings.TrimSpace(string(data))}
	}

	sent, err := digest.Parse(resp.Header.Get("Docker-Content-Digest"))
	if err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("source agent sent an invalid digest %q: %w",
			resp.Header.Get("Docker-Content-Digest"), err)
	}
	if want != "" && sent != want {
		return ocispec.Descriptor{}, nil, fmt.Errorf("%w: the source's image is %s, want %s", ErrDigest, sent, want)
	}

	data, err := io.ReadAll(io.LimitReader(resp.Body, maxRootBytes+1))
	if err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("failed to read the base image's root: %w", err)
	}
	if len(data) > maxRootBytes {
		return ocispec.Descriptor{}, nil, fmt.Errorf("%w: the base image's root exceeds %d bytes", ErrTooLong,
			maxRootBytes)
	}
	if got := digest.FromBytes(data); got != sent {
		return ocispec.Descriptor{}, nil, fmt.Errorf("%w: got %s, want %s", ErrDigest, got, sent)
	}
	desc := ocispec.Descriptor{MediaType: resp.Header.Get("Content-Type"), Digest: sent, Size: int64(len(data))}
	return desc, data, nil
}
