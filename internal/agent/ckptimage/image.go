// Package ckptimage builds the OCI checkpoint image of one container from
// its checkpoint archive, with go-containerregistry. The archive is the
// image's only layer, uncompressed and unchanged: the builder never copies
// it, and the digest it uses is the one archive.Inspect computed while it
// read the archive once.
//
// The image carries the checkpoint annotations on both the index and the
// manifest: containerd (2.1 to 2.3) looks for
// org.criu.checkpoint.container.name on the index its image record points
// to, and CRI-O looks for io.kubernetes.cri-o.annotations.checkpoint.name on
// the image it resolves. Both keys on both levels make one image serve both
// runtimes.
package ckptimage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/lpm-dev/lpm/internal/agent/archive"
)

// Annotation keys the builder writes on the index and the manifest.
const (
	// AnnotationContainerName is the key containerd reads (checkpointctl's
	// CheckpointAnnotationName).
	AnnotationContainerName = metadata.CheckpointAnnotationName
	// AnnotationCRIOName is the key CRI-O reads.
	AnnotationCRIOName = "io.kubernetes.cri-o.annotations.checkpoint.name"
	// AnnotationMigrationUID names the PodMigration the image belongs to.
	AnnotationMigrationUID = "lpm.dev/migration-uid"
)

// Source describes the checkpointed container.
type Source struct {
	// ArchivePath is the checkpoint archive, which becomes the layer.
	ArchivePath string
	// Archive is what archive.Inspect read from ArchivePath.
	Archive *archive.Info
	// Container, Pod, Namespace and PodUID name the checkpointed container.
	Container string
	Pod       string
	Namespace string
	PodUID    string
	// MigrationUID is the UID of the PodMigration.
	MigrationUID string
	// Platform is the node's platform, for example linux/amd64.
	Platform v1.Platform
}

// Image is a built checkpoint image: its small blobs in memory and its
// layer on disk.
type Image struct {
	// Index, Manifest and Config are the raw JSON blobs.
	Index    []byte
	Manifest []byte
	Config   []byte
	// Layer describes the archive as a blob.
	Layer v1.Descriptor
	// ArchivePath is the file that holds the layer.
	ArchivePath string
}

// Build builds the checkpoint image of src. It reads nothing from the
// archive: the layer's digest and size come from src.Archive.
func Build(src Source) (*Image, error) {
	if src.Archive == nil {
		return nil, errors.New("checkpoint image needs the archive's inspection result")
	}
	if src.Container == "" {
		return nil, errors.New("checkpoint image needs a container name")
	}
	layerDigest, err := v1.NewHash(src.Archive.Digest.String())
	if err != nil {
		return nil, fmt.Errorf("invalid archive digest %q: %w", src.Archive.Digest, err)
	}
	layer := FileLayer(src.ArchivePath, layerDigest, src.Archive.Size, "checkpoint archive")

	img, err := buildManifest(src, layer)
	if err != nil {
		return nil, err
	}
	idx := mutate.Annotations(mutate.AppendManifests(
		mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &src.Platform}},
	), annotations(src)).(v1.ImageIndex)

	out := &Image{ArchivePath: src.ArchivePath}
	if out.Index, err = idx.RawManifest(); err != nil {
		return nil, fmt.Errorf("failed to serialise the image index: %w", err)
	}
	if out.Manifest, err = img.RawManifest(); err != nil {
		return nil, fmt.Errorf("failed to serialise the image manifest: %w", err)
	}
	if out.Config, err = img.RawConfigFile(); err != nil {
		return nil, fmt.Errorf("failed to serialise the image config: %w", err)
	}
	out.Layer = v1.Descriptor{MediaType: types.OCIUncompressedLayer, Size: src.Archive.Size, Digest: layerDigest}
	return out, nil
}

func buildManifest(src Source, layer v1.Layer) (v1.Image, error) {
	created := src.Archive.Config.CheckpointedAt
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	base, err := mutate.ConfigFile(base, &v1.ConfigFile{
		Architecture: src.Platform.Architecture,
		OS:           src.Platform.OS,
		Variant:      src.Platform.Variant,
		Created:      v1.Time{Time: created.UTC()},
		RootFS:       v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, fmt.Errorf("failed to set the image config: %w", err)
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCIUncompressedLayer,
		History:   v1.History{Created: v1.Time{Time: created.UTC()}, CreatedBy: "lpm checkpoint"},
	})
	if err != nil {
		return nil, fmt.Errorf("failed to add the archive layer: %w", err)
	}
	return mutate.Annotations(img, annotations(src)).(v1.Image), nil
}

// annotations returns the annotations of both the index and the manifest.
func annotations(src Source) map[string]string {
	cfg := src.Archive.Config
	anns := map[string]string{
		AnnotationContainerName:                      src.Container,
		AnnotationCRIOName:                           src.Container,
		metadata.CheckpointAnnotationPod:             src.Pod,
		metadata.CheckpointAnnotationNamespace:       src.Namespace,
		metadata.CheckpointAnnotationPodUID:          src.PodUID,
		metadata.CheckpointAnnotationRootfsImageName: cfg.RootfsImageName,
		metadata.CheckpointAnnotationRootfsImageID:   cfg.RootfsImageRef,
		metadata.CheckpointAnnotationRuntimeName:     cfg.OCIRuntime,
		metadata.CheckpointAnnotationHostArch:        src.Platform.Architecture,
		AnnotationMigrationUID:                       src.MigrationUID,
		"org.opencontainers.image.created":           cfg.CheckpointedAt.UTC().Format(time.RFC3339),
		"lpm.dev/archive-bytes":                      strconv.FormatInt(src.Archive.Size, 10),
	}
	for k, v := range anns {
		if v == "" {
			delete(anns, k)
		}
	}
	return anns
}

// Digest returns the digest of the image index, which names the image.
func (img *Image) Digest() digest.Digest {
	return digest.FromBytes(img.Index)
}

// ManifestDigest returns the digest of the image manifest.
func (img *Image) ManifestDigest() digest.Digest {
	return digest.FromBytes(img.Manifest)
}

// ConfigDigest returns the digest of the image config.
func (img *Image) ConfigDigest() digest.Digest {
	return digest.FromBytes(img.Config)
}

// TotalBytes is the size of all blobs of the image.
func (img *Image) TotalBytes() int64 {
	return int64(len(img.Index)+len(img.Manifest)+len(img.Config)) + img.Layer.Size
}

// FileLayer returns a v1.Layer that reads an uncompressed layer from the
// file at path, whose digest (and so diff ID) was computed before. what
// names the file in errors, such as "checkpoint archive".
func FileLayer(path string, digest v1.Hash, size int64, what string) v1.Layer {
	return &fileLayer{path: path, digest: digest, size: size, what: what}
}

type fileLayer struct {
	path   string
	digest v1.Hash
	size   int64
	what   string
}

func (l *fileLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *fileLayer) DiffID() (v1.Hash, error)            { return l.digest, nil }
func (l *fileLayer) Size() (int64, error)                { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error) { return types.OCIUncompressedLayer, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error)  { return l.open() }
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) {
	return l.open()
}

func (l *fileLayer) open() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, fmt.Errorf("failed to open %s %q: %w", l.what, l.path, err)
	}
	return f, nil
}

// Blob returns the raw bytes and media type of one of the image's small
// blobs (index, manifest or config), and false for any other digest.
func (img *Image) Blob(d digest.Digest) ([]byte, types.MediaType, bool) {
	switch d {
	case img.Digest():
		return img.Index, types.OCIImageIndex, true
	case img.ManifestDigest():
		return img.Manifest, types.OCIManifestSchema1, true
	case img.ConfigDigest():
		return img.Config, types.OCIConfigJSON, true
	}
	return nil, "", false
}

// OpenLayer opens the archive that is the image's layer.
func (img *Image) OpenLayer() (*os.File, error) {
	f, err := os.Open(img.ArchivePath)
	if err != nil {
		return nil, fmt.Errorf("failed to open checkpoint archive %q: %w", img.ArchivePath, err)
	}
	return f, nil
}

// RawManifest is a manifest or index as raw bytes with its media type, in
// the form go-containerregistry's remote.Put takes.
type RawManifest struct {
	Data []byte
	Type types.MediaType
}

// RawManifest returns the raw bytes.
func (m RawManifest) RawManifest() ([]byte, error) { return m.Data, nil }

// MediaType returns the media type.
func (m RawManifest) MediaType() (types.MediaType, error) { return m.Type, nil }

// ArchiveLayer returns the image's layer as a v1.Layer that reads the
// archive, for pushing it to a registry.
func (img *Image) ArchiveLayer() v1.Layer {
	return FileLayer(img.ArchivePath, v1.Hash{Algorithm: "sha256", Hex: img.Layer.Digest.Hex}, img.Layer.Size,
		"checkpoint archive")
}

// ErrUnknownBlob reports a digest that is not part of the image.
var ErrUnknownBlob = errors.New("blob is not part of the checkpoint image")

// Open returns the blob desc names from offset on: the image's own blobs
// from memory and the layer from the archive file.
func (img *Image) Open(_ context.Context, desc ocispec.Descriptor, offset int64) (io.ReadCloser, error) {
	if offset < 0 {
		return nil, fmt.Errorf("invalid offset %d", offset)
	}
	if data, _, ok := img.Blob(desc.Digest); ok {
		if offset > int64(len(data)) {
			return nil, fmt.Errorf("offset %d is past the end of blob %s", offset, desc.Digest)
		}
		return io.NopCloser(bytes.NewReader(data[offset:])), nil
	}
	if desc.Digest.String() != img.Layer.Digest.String() {
		return nil, fmt.Errorf("%w: %s", ErrUnknownBlob, desc.Digest)
	}
	f, err := img.OpenLayer()
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("failed to seek checkpoint archive: %w", err)
	}
	return f, nil
}

// Descriptor returns the descriptor of the image index, which names the
// whole image.
func (img *Image) Descriptor() ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: img.Digest(),
		Size: int64(len(img.Index))}
}

// FromBlobs rebuilds an image from its stored small blobs and archive, as
// an agent does after a restart.
func FromBlobs(index, manifest, config []byte, archivePath string) (*Image, error) {
	var m v1.Manifest
	if err := json.Unmarshal(manifest, &m); err != nil {
		return nil, fmt.Errorf("invalid stored manifest: %w", err)
	}
	if len(m.Layers) != 1 {
		return nil, fmt.Errorf("stored manifest has %d layers, want 1", len(m.Layers))
	}
	if digest.FromBytes(config).String() != m.Config.Digest.String() {
		return nil, errors.New("stored config does not match the stored manifest")
	}
	return &Image{Index: index, Manifest: manifest, Config: config, Layer: m.Layers[0],
		ArchivePath: archivePath}, nil
}
