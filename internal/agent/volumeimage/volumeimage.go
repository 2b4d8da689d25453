// Package volumeimage builds a migration's volume data image: one OCI image
// whose only layer holds the copier program (volumedata.CopierPath) and the
// tar stream of the source pod's emptyDir volumes (volumedata.DataPath).
// The restored pod runs it as an init container that copies the volumes'
// contents into the new pod's volumes.
//
// The volumes travel as one file inside the layer rather than as the
// layer's own files. The runtime interprets some names when it unpacks a
// layer (".wh." entries are whiteouts), and the copier, which may run as
// the pod's non-root user, must read every file whatever its owner and
// mode.
//
// The image is returned as a ckptimage.Image, so it moves, is offered,
// pushed and imported like the checkpoint images.
package volumeimage

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/lpm-dev/lpm/internal/agent/ckptimage"
	"github.com/lpm-dev/lpm/internal/volumedata"
)

// Annotation keys the builder writes on the index and the manifest.
const (
	// AnnotationVolumes lists the carried volumes, separated by commas.
	AnnotationVolumes = "lpm.dev/volumes"
	// AnnotationDataBytes is the size of the volumes' file contents.
	AnnotationDataBytes = "lpm.dev/volume-data-bytes"
)

// blockSize is the tar block size.
const blockSize = 512

// Source describes what goes into the image.
type Source struct {
	// LayerPath is the file to create, with mode 0600, for the layer. It
	// must not exist.
	LayerPath string
	// CopierPath is the static copier program to include.
	CopierPath string
	// Volumes are the emptyDir volumes to pack.
	Volumes []volumedata.Volume
	// Limits bound the volumes' contents.
	Limits volumedata.Limits
	// MigrationUID is the UID of the PodMigration.
	MigrationUID string
	// User is the image's user as UID:GID, empty for root.
	User string
	// Created is the image's creation time, the cut.
	Created time.Time
	// Platform is the node's platform, for example linux/amd64.
	Platform v1.Platform
}

// Build writes the layer to src.LayerPath and returns the image and what
// the volumes held. On error the layer file is removed.
func Build(ctx context.Context, src Source) (*ckptimage.Image, volumedata.Stats, error) {
	stats, err := writeLayer(ctx, src)
	if err != nil {
		_ = os.Remove(src.LayerPath)
		return nil, stats, err
	}
	layerDigest, size, err := hashFile(src.LayerPath)
	if err != nil {
		_ = os.Remove(src.LayerPath)
		return nil, stats, err
	}
	img, err := buildImage(src, stats, layerDigest, size)
	if err != nil {
		_ = os.Remove(src.LayerPath)
		return nil, stats, err
	}
	return img, stats, nil
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeLayer writes the layer tar: the copier, then the volumes' tar
// stream as one file. The stream's size is known only once it is written,
// so its header is written as a placeholder block first and filled in
// afterwards.
func writeLayer(ctx context.Context, src Source) (volumedata.Stats, error) {
	f, err := os.OpenFile(src.LayerPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return volumedata.Stats{}, fmt.Errorf("failed to create the volume data layer: %w", err)
	}
	defer func() { _ = f.Close() }()
	bw := bufio.NewWriterSize(f, 1<<20)
	out := &countingWriter{w: bw}

	if err := writeCopier(out, src.CopierPath); err != nil {
		return volumedata.Stats{}, err
	}
	headerOffset := out.n
	if _, err := out.Write(make([]byte, blockSize)); err != nil {
		return volumedata.Stats{}, fmt.Errorf("failed to write the volume data layer: %w", err)
	}
	start := out.n
	stats, err := volumedata.Pack(ctx, out, src.Volumes, src.Limits)
	if err != nil {
		return stats, err
	}
	dataSize := out.n - start
	padding := (blockSize - dataSize%blockSize) % blockSize
	// Two zero blocks end the archive.
	if _, err := out.Write(make([]byte, padding+2*blockSize)); err != nil {
		return stats, fmt.Errorf("failed to write the volume data layer: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return stats, fmt.Errorf("failed to write the volume data layer: %w", err)
	}

	hdr, err := singleBlockHeader(&tar.Header{Name: strings.TrimPrefix(volumedata.DataPath, "/"),
		Typeflag: tar.TypeReg, Size: dataSize, Mode: 0o444, ModTime: time.Unix(0, 0), Format: tar.FormatGNU})
	if err != nil {
		return stats, err
	}
	if _, err := f.WriteAt(hdr, headerOffset); err != nil {
		return stats, fmt.Errorf("failed to write the volume data layer: %w", err)
	}
	if err := f.Close(); err != nil {
		return stats, fmt.Errorf("failed to write the volume data layer: %w", err)
	}
	return stats, nil
}

// writeCopier writes the copier program as the layer's first entry,
// padded to the block size, without ending the archive.
func writeCopier(w io.Writer, path string) error {
	bin, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("failed to open the copier program: %w", err)
	}
	defer func() { _ = bin.Close() }()
	info, err := bin.Stat()
	if err != nil {
		return fmt.Errorf("failed to read the copier program: %w", err)
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("copier program %s is not a regular file", path)
	}
	tw := tar.NewWriter(w)
	err = tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(volumedata.CopierPath, "/"), Typeflag: tar.TypeReg,
		Size: info.Size(), Mode: 0o755, ModTime: time.Unix(0, 0), Format: tar.FormatUSTAR})
	if err != nil {
		return fmt.Errorf("failed to write the copier's header: %w", err)
	}
	if _, err := io.Copy(tw, bin); err != nil {
		return fmt.Errorf("failed to write the copier program: %w", err)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("failed to write the copier program: %w", err)
	}
	return nil
}

// singleBlockHeader encodes hdr as exactly one tar block. The GNU format
// stores a size of 8 GiB or more in base 256 in the same block.
func singleBlockHeader(hdr *tar.Header) ([]byte, error) {
	var buf bytes.Buffer
	if err := tar.NewWriter(&buf).WriteHeader(hdr); err != nil {
		return nil, fmt.Errorf("failed to encode the volume data header: %w", err)
	}
	if buf.Len() != blockSize {
		return nil, fmt.Errorf("volume data header takes %d bytes, want %d", buf.Len(), blockSize)
	}
	return buf.Bytes(), nil
}

func hashFile(path string) (v1.Hash, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return v1.Hash{}, 0, fmt.Errorf("failed to open the volume data layer: %w", err)
	}
	defer func() { _ = f.Close() }()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return v1.Hash{}, 0, fmt.Errorf("failed to hash the volume data layer: %w", err)
	}
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}, n, nil
}

func buildImage(src Source, stats volumedata.Stats, layerDigest v1.Hash, size int64) (*ckptimage.Image, error) {
	created := v1.Time{Time: src.Created.UTC()}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	base, err := mutate.ConfigFile(base, &v1.ConfigFile{
		Architecture: src.Platform.Architecture,
		OS:           src.Platform.OS,
		Variant:      src.Platform.Variant,
		Created:      created,
		RootFS:       v1.RootFS{Type: "layers"},
		Config: v1.Config{
			Entrypoint: []string{volumedata.CopierPath},
			User:       src.User,
			WorkingDir: "/",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("failed to set the image config: %w", err)
	}
	layer := ckptimage.FileLayer(src.LayerPath, layerDigest, size, "volume data layer")
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, MediaType: types.OCIUncompressedLayer,
		History: v1.History{Created: created, CreatedBy: "lpm volume data"}})
	if err != nil {
		return nil, fmt.Errorf("failed to add the volume data layer: %w", err)
	}
	anns := annotations(src, stats)
	img = mutate.Annotations(img, anns).(v1.Image)
	idx := mutate.Annotations(mutate.AppendManifests(
		mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &src.Platform}},
	), anns).(v1.ImageIndex)

	out := &ckptimage.Image{ArchivePath: src.LayerPath,
		Layer: v1.Descriptor{MediaType: types.OCIUncompressedLayer, Size: size, Digest: layerDigest}}
	if out.Index, err = idx.RawManifest(); err != nil {
		return nil, fmt.Errorf("failed to serialise the image index: %w", err)
	}
	if out.Manifest, err = img.RawManifest(); err != nil {
		return nil, fmt.Errorf("failed to serialise the image manifest: %w", err)
	}
	if out.Config, err = img.RawConfigFile(); err != nil {
		return nil, fmt.Errorf("failed to serialise the image config: %w", err)
	}
	return out, nil
}

func annotations(src Source, stats volumedata.Stats) map[string]string {
	names := make([]string, 0, len(src.Volumes))
	for _, v := range src.Volumes {
		names = append(names, v.Name)
	}
	return map[string]string{
		ckptimage.AnnotationMigrationUID: src.MigrationUID,
		AnnotationVolumes:                strings.Join(names, ","),
		AnnotationDataBytes:              fmt.Sprint(stats.DataBytes),
	}
}
