package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// CRIImageLabel is the label with which containerd's CRI plugin (v2.3)
// marks the image records it manages. The CRI plugin adds it to a record
// without it when it receives the record's create event.
const CRIImageLabel = "io.cri-containerd.image"

// ErrBaseImageNotServed reports an image whose content this node does not
// hold completely for its platform, so it cannot serve it to a peer.
var ErrBaseImageNotServed = errors.New("base image content is not complete on this node")

// ImageContent is the content of one image for one platform, as a node
// holds it: the root the image record targets (an index or a manifest),
// the manifest the node runs, its config and its layers.
type ImageContent struct {
	// Root is the descriptor the image record targets.
	Root ocispec.Descriptor
	// Manifest is the platform's manifest; Root itself when Root is one.
	Manifest ocispec.Descriptor
	// Config is the image config; its digest is the image ID.
	Config ocispec.Descriptor
	// Layers are the manifest's layers, in order.
	Layers []ocispec.Descriptor
}

// Blobs returns every descriptor of the content: root, manifest (when it
// is not the root), config and layers.
func (c *ImageContent) Blobs() []ocispec.Descriptor {
	out := []ocispec.Descriptor{c.Root}
	if c.Manifest.Digest != c.Root.Digest {
		out = append(out, c.Manifest)
	}
	out = append(out, c.Config)
	return append(out, c.Layers...)
}

// ImageContent reads the content of an image record from the content
// store: the root, and for an index the manifest of the platform whose
// config digest is imageID (any matching manifest when imageID is empty).
func (r *Runtime) ImageContent(ctx context.Context, img images.Image, imageID digest.Digest,
	platform ocispec.Platform) (*ImageContent, error) {
	src := &storeSource{cs: r.client.ContentStore()}
	return resolveImageContent(ctx, src, img.Target, imageID, platforms.Only(platform), false)
}

// OpenBlob opens a blob of the content store for reading at any offset.
func (r *Runtime) OpenBlob(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	ra, err := r.client.ContentStore().ReaderAt(ctx, desc)
	if err != nil {
		return nil, fmt.Errorf("failed to open blob %s: %w", desc.Digest, err)
	}
	return ra, nil
}

// storeSource is a BlobSource reading the local content store.
type storeSource struct {
	cs content.Store
}

func (s *storeSource) Open(ctx context.Context, desc ocispec.Descriptor, offset int64) (io.ReadCloser, error) {
	ra, err := s.cs.ReaderAt(ctx, desc)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("%w: blob %s is missing", ErrBaseImageNotServed, desc.Digest)
		}
		return nil, fmt.Errorf("failed to open blob %s: %w", desc.Digest, err)
	}
	return readCloser{Reader: io.NewSectionReader(ra, offset, ra.Size()-offset), Closer: ra}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// resolveImageContent reads root and, for an index, picks the manifest of
// the platform whose config digest is imageID. With skipMissing the
// manifests that src cannot open are skipped, as a source node serves
// only the manifest it runs.
func resolveImageContent(ctx context.Context, src BlobSource, root ocispec.Descriptor, imageID digest.Digest,
	match platforms.MatchComparer, skipMissing bool) (*ImageContent, error) {
	switch {
	case images.IsManifestType(root.MediaType):
		m, err := readManifest(ctx, src, root)
		if err != nil {
			return nil, err
		}
		if imageID != "" && m.Config.Digest != imageID {
			return nil, fmt.Errorf("%w: manifest %s has config %s, want image ID %s", ErrDigestMismatch,
				root.Digest, m.Config.Digest, imageID)
		}
		return &ImageContent{Root: root, Manifest: root, Config: m.Config, Layers: m.Layers}, nil
	case images.IsIndexType(root.MediaType):
	default:
		return nil, fmt.Errorf("%w: image root %s has media type %q", ErrInvalidImage, root.Digest, root.MediaType)
	}

	raw, err := fetchSmall(ctx, root, src)
	if err != nil {
		return nil, err
	}
	var index ocispec.Index
	if err := json.Unmarshal(raw, &index); err != nil {
		return nil, fmt.Errorf("%w: index %s is not JSON: %w", ErrInvalidImage, root.Digest, err)
	}
	var errs []error
	for _, desc := range index.Manifests {
		if !images.IsManifestType(desc.MediaType) || (desc.Platform != nil && !match.Match(*desc.Platform)) {
			continue
		}
		m, err := readManifest(ctx, src, desc)
		if err != nil {
			if skipMissing {
				errs = append(errs, err)
				continue
			}
			if errors.Is(err, ErrBaseImageNotServed) {
				continue
			}
			return nil, err
		}
		if imageID == "" || m.Config.Digest == imageID {
			return &ImageContent{Root: root, Manifest: desc, Config: m.Config, Layers: m.Layers}, nil
		}
	}
	return nil, errors.Join(append([]error{fmt.Errorf("%w: index %s has no manifest for this platform with "+
		"image ID %q", ErrBaseImageNotServed, root.Digest, imageID)}, errs...)...)
}

func readManifest(ctx context.Context, src BlobSource, desc ocispec.Descriptor) (*ocispec.Manifest, error) {
	raw, err := fetchSmall(ctx, desc, src)
	if err != nil {
		return nil, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest %s is not JSON: %w", ErrInvalidImage, desc.Digest, err)
	}
	if !images.IsConfigType(m.Config.MediaType) || m.Config.Size < 0 {
		return nil, fmt.Errorf("%w: manifest %s has config media type %q", ErrInvalidImage, desc.Digest,
			m.Config.MediaType)
	}
	for _, l := range m.Layers {
		if !images.IsLayerType(l.MediaType) || l.Size < 0 {
			return nil, fmt.Errorf("%w: manifest %s has a layer of media type %q", ErrInvalidImage, desc.Digest,
				l.MediaType)
		}
	}
	return &m, nil
}

// MissingBlobs returns the descriptors whose digest has returns false for,
// in order and each digest once: the blobs a node must receive.
func MissingBlobs(descs []ocispec.Descriptor, has func(digest.Digest) bool) []ocispec.Descriptor {
	var out []ocispec.Descriptor
	seen := map[digest.Digest]bool{}
	for _, d := range descs {
		if seen[d.Digest] {
			continue
		}
		seen[d.Digest] = true
		if !has(d.Digest) {
			out = append(out, d)
		}
	}
	return out
}

// CarryRequest describes a base image to copy from a peer's content store.
type CarryRequest struct {
	// Names are the image records to create besides the image ID, for
	// example the reference the source runtime records.
	Names []string
	// Root is the descriptor the source's image record targets. The
	// caller has read it from the source and checked it against what it
	// expects.
	Root ocispec.Descriptor
	// RootData is Root's content.
	RootData []byte
	// ImageID is the config digest the image must have; any when empty.
	ImageID digest.Digest
	// Platform selects the manifest of an index.
	Platform ocispec.Platform
	// Snapshotter unpacks the image; containerd's default when empty.
	Snapshotter string
	// IngestPrefix starts the references of the content writes.
	IngestPrefix string
}

// CarryResult describes a carried image.
type CarryResult struct {
	// ImageID is the image's config digest.
	ImageID digest.Digest
	// Layers is the number of the image's layers; LayersCarried of them
	// were missing here and were copied.
	Layers        int
	LayersCarried int
	// LayerBytes is the number of layer bytes read from the source.
	LayerBytes int64
}

// CarryImage copies an image from a peer's content store into this one.
// It checks every blob by digest, writes only the blobs this content store
// lacks, creates the image records under req.Names with the CRI plugin's
// label (and one named by the image ID), and unpacks the image for the snapshotter. Blobs already written
// stay when it fails: they are what a retry needs, and without an image
// record containerd collects them once the lease expires.
func (r *Runtime) CarryImage(ctx context.Context, req CarryRequest, src BlobSource) (*CarryResult, error) {
	ctx, done, err := r.client.WithLease(ctx, leases.WithRandomID(), leases.WithExpiration(time.Hour))
	if err != nil {
		return nil, fmt.Errorf("failed to create a containerd lease: %w", err)
	}
	defer func() { _ = done(context.WithoutCancel(ctx)) }()

	counted := &countingSource{src: src}
	src = &prefetchedSource{desc: req.Root, data: req.RootData, next: counted}
	ic, err := resolveImageContent(ctx, src, req.Root, req.ImageID, platforms.Only(req.Platform), true)
	if err != nil {
		return nil, err
	}
	cs := r.client.ContentStore()
	has := func(d digest.Digest) bool {
		_, err := cs.Info(ctx, d)
		return err == nil
	}
	missing := MissingBlobs(ic.Blobs(), has)
	missingSet := map[digest.Digest]bool{}
	for _, d := range missing {
		missingSet[d.Digest] = true
	}

	ireq := ImportRequest{IngestPrefix: req.IngestPrefix}
	carried := 0
	for _, l := range ic.Layers {
		if !missingSet[l.Digest] {
			continue
		}
		if err := r.ingestLayer(ctx, ireq, l, counted); err != nil {
			return nil, err
		}
		carried++
	}
	if err := r.writeParents(ctx, ireq, ic, missingSet, src); err != nil {
		return nil, err
	}

	// The CRI plugin names every image it pulls by its ID as well, and
	// finds an image by a bare ID through any record of that ID.
	names := []string{ic.Config.Digest.String()}
	for _, name := range req.Names {
		if name != names[0] {
			names = append(names, name)
		}
	}
	if err := r.createCRIImages(ctx, names, ic.Root); err != nil {
		return nil, err
	}
	img := images.Image{Name: names[0], Target: ic.Root}
	if err := containerd.NewImageWithPlatform(r.client, img, platforms.Only(req.Platform)).
		Unpack(ctx, req.Snapshotter); err != nil {
		return nil, fmt.Errorf("failed to unpack image %q: %w", names[0], err)
	}
	return &CarryResult{ImageID: ic.Config.Digest, Layers: len(ic.Layers), LayersCarried: carried,
		LayerBytes: counted.layerBytes.Load()}, nil
}

// writeParents writes the missing config, manifest and index, children
// first, with the labels that keep their children from being collected.
func (r *Runtime) writeParents(ctx context.Context, req ImportRequest, ic *ImageContent,
	missing map[digest.Digest]bool, src BlobSource) error {
	cs := r.client.ContentStore()
	write := func(desc ocispec.Descriptor, labels map[string]string) error {
		if !missing[desc.Digest] {
			return nil
		}
		data, err := fetchSmall(ctx, desc, src)
		if err != nil {
			return err
		}
		return writeSmall(ctx, cs, req, desc, data, labels)
	}
	if err := write(ic.Config, nil); err != nil {
		return err
	}
	manifestLabels := map[string]string{"containerd.io/gc.ref.content.config": ic.Config.Digest.String()}
	for i, l := range ic.Layers {
		manifestLabels["containerd.io/gc.ref.content.l."+strconv.Itoa(i)] = l.Digest.String()
	}
	if err := write(ic.Manifest, manifestLabels); err != nil {
		return err
	}
	if ic.Manifest.Digest == ic.Root.Digest {
		return nil
	}
	// Only the manifest this node runs is carried, as a pull for one
	// platform fetches only that one.
	return write(ic.Root, map[string]string{"containerd.io/gc.ref.content.m.0": ic.Manifest.Digest.String()})
}

// createCRIImages creates or updates image records that target root, with
// the label that marks them as managed by the CRI plugin.
func (r *Runtime) createCRIImages(ctx context.Context, names []string, root ocispec.Descriptor) error {
	store := r.client.ImageService()
	for _, name := range names {
		img := images.Image{Name: name, Target: root, Labels: map[string]string{CRIImageLabel: "managed"}}
		_, err := store.Create(ctx, img)
		if errdefs.IsAlreadyExists(err) {
			_, err = store.Update(ctx, img, "target", "labels."+CRIImageLabel)
		}
		if err != nil {
			return fmt.Errorf("failed to create image %q: %w", name, err)
		}
	}
	return nil
}

// countingSource counts the layer bytes read through it.
type countingSource struct {
	src        BlobSource
	layerBytes atomic.Int64
}

func (s *countingSource) Open(ctx context.Context, desc ocispec.Descriptor, offset int64) (io.ReadCloser,
	error) {
	rc, err := s.src.Open(ctx, desc, offset)
	if err != nil || !images.IsLayerType(desc.MediaType) {
		return rc, err
	}
	return readCloser{Reader: &countingReader{r: rc, n: &s.layerBytes}, Closer: rc}, nil
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// prefetchedSource serves one blob the caller already read and passes
// every other request on.
type prefetchedSource struct {
	desc ocispec.Descriptor
	data []byte
	next BlobSource
}

func (s *prefetchedSource) Open(ctx context.Context, desc ocispec.Descriptor, offset int64) (io.ReadCloser,
	error) {
	if desc.Digest == s.desc.Digest && s.data != nil && offset <= int64(len(s.data)) {
		return io.NopCloser(bytes.NewReader(s.data[offset:])), nil
	}
	return s.next.Open(ctx, desc, offset)
}
