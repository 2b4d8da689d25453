package imageprep

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/lpm-dev/lpm/internal/agent/ckptimage"
	"github.com/lpm-dev/lpm/internal/agent/runtime"
)

// Write sizes of the ingest measurement. lpm's import copies the layer
// with io.Copy, whose buffer is 32 KiB, and containerd's content writer
// sends one gRPC request per Write and waits for its answer
// (core/content/proxy/content_writer.go in containerd 2.3.7).
const (
	IngestSmallWrites = 32 << 10
	IngestLargeWrites = 1 << 20
)

// Ingest writes the archive at path into the runtime's content store as
// the image's layer, with writes of bufSize bytes, commits it and deletes
// it again. It returns the time from opening the writer to the commit.
// This is the step of lpm's import that receives the layer, without the
// network: a prototype of larger writes measures against the same code
// path with lpm's write size.
func Ingest(ctx context.Context, rt *runtime.Runtime, img *ckptimage.Image, path string, bufSize int) (
	time.Duration, error) {
	cs := rt.Client().ContentStore()
	desc := ocispec.Descriptor{MediaType: string(img.Layer.MediaType), Size: img.Layer.Size,
		Digest: digest.Digest(img.Layer.Digest.String())}
	if _, err := cs.Info(ctx, desc.Digest); err == nil {
		return 0, fmt.Errorf("layer %s is already in the content store; the measurement needs it absent",
			desc.Digest)
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }()

	ref := fmt.Sprintf("lpm-bench-ingest-%d-%s", bufSize, desc.Digest.Encoded())
	// An ingest of the same reference left by an earlier measurement would
	// be resumed, and the layer written twice.
	if err := cs.Abort(ctx, ref); err != nil && !errdefs.IsNotFound(err) {
		return 0, fmt.Errorf("failed to abort an earlier ingest %s: %w", ref, err)
	}
	start := time.Now()
	w, err := content.OpenWriter(ctx, cs, content.WithRef(ref), content.WithDescriptor(desc))
	if err != nil {
		return 0, fmt.Errorf("failed to open a containerd writer: %w", err)
	}
	defer func() { _ = w.Close() }()
	// The buffer size sets the size of every Write, because neither side
	// implements io.ReaderFrom or io.WriterTo here.
	if _, err := io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{f}, make([]byte, bufSize)); err != nil {
		_ = cs.Abort(context.WithoutCancel(ctx), ref)
		return 0, err
	}
	if err := w.Commit(ctx, desc.Size, desc.Digest); err != nil && !errdefs.IsAlreadyExists(err) {
		return 0, fmt.Errorf("failed to commit the layer: %w", err)
	}
	elapsed := time.Since(start)
	if err := cs.Delete(context.WithoutCancel(ctx), desc.Digest); err != nil && !errdefs.IsNotFound(err) {
		return elapsed, fmt.Errorf("failed to delete the measured layer: %w", err)
	}
	return elapsed, nil
}
