package runtime

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/defaults"
	"github.com/containerd/containerd/v2/pkg/archive"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Labels that containerd's unpacker sets on the snapshot of a layer. The
// snapshot written here carries the same labels.
const (
	labelSnapshotRef    = "containerd.io/snapshot.ref"
	labelSnapshotDiffID = "containerd.io/snapshot/diff-id"
	labelGCSnapshotRef  = "containerd.io/gc.ref.snapshot."
)

func (req ImportRequest) snapshotter() string {
	if req.Snapshotter == "" {
		return defaults.DefaultSnapshotter
	}
	return req.Snapshotter
}

// snapshotLayer extracts the layer as it arrives into a new snapshot named
// by the layer's chain ID, as containerd's unpacker names it. No copy of
// the layer goes to the content store, because containerd restores a
// checkpoint from the image's snapshot and reads only the index, manifest
// and config from the content store. The snapshot is committed only after
// the stream matched the layer's digest and size.
//
// The path works when containerd's filesystem is reachable through
// req.ProcRoot and the snapshotter hands out a directory for a layer
// without parent (overlayfs and native do). It returns false, having
// written nothing, when it cannot be used; the caller then goes through
// the content store.
func (r *Runtime) snapshotLayer(ctx context.Context, req ImportRequest, desc ocispec.Descriptor,
	src BlobSource) (bool, error) {
	if req.ProcRoot == "" {
		return false, nil
	}
	server, err := r.client.IntrospectionService().Server(ctx)
	if err != nil {
		return false, fmt.Errorf("failed to get containerd's server info: %w", err)
	}
	runtimeRoot := filepath.Join(req.ProcRoot, strconv.FormatUint(server.Pid, 10), "root")

	// A single-layer image's chain ID is the layer's diff ID, which
	// checkConfig showed to be the layer's digest.
	chainID := desc.Digest.String()
	sn := r.client.SnapshotService(req.snapshotter())
	if _, err := sn.Stat(ctx, chainID); err == nil {
		report(req.Progress, desc.Size, desc.Size)
		return true, nil
	}
	labels := map[string]string{labelSnapshotRef: chainID, labelSnapshotDiffID: chainID}
	key := fmt.Sprintf(snapshots.UnpackKeyFormat, req.ingestRef(desc.Digest)+"-"+randomSuffix(), chainID)
	mounts, err := sn.Prepare(ctx, key, "", snapshots.WithLabels(labels))
	if err != nil {
		return false, fmt.Errorf("failed to prepare a snapshot for layer %s: %w", desc.Digest, err)
	}
	// A new snapshot's directory exists and is empty. Anything else means
	// that the PID containerd reports is not in the namespace of
	// req.ProcRoot, and the directory is not the snapshot's.
	dir, ok := directoryOf(mounts, runtimeRoot)
	if ok {
		entries, err := os.ReadDir(dir)
		ok = err == nil && len(entries) == 0
	}
	if !ok {
		_ = sn.Remove(context.WithoutCancel(ctx), key)
		return false, nil
	}

	if err := r.extractLayer(ctx, req, desc, src, dir); err != nil {
		_ = sn.Remove(context.WithoutCancel(ctx), key)
		return true, err
	}
	if err := sn.Commit(ctx, chainID, key, snapshots.WithLabels(labels)); err != nil {
		_ = sn.Remove(context.WithoutCancel(ctx), key)
		if errdefs.IsAlreadyExists(err) {
			return true, nil
		}
		return true, fmt.Errorf("failed to commit the snapshot of layer %s: %w", desc.Digest, err)
	}
	return true, nil
}

// directoryOf returns the path, under runtimeRoot, of the directory that
// mounts bind-mount. It returns false unless mounts is one writable bind
// mount of an absolute path in containerd's filesystem.
func directoryOf(mounts []mount.Mount, runtimeRoot string) (string, bool) {
	if len(mounts) != 1 || mounts[0].Type != "bind" || !filepath.IsAbs(mounts[0].Source) {
		return "", false
	}
	for _, o := range mounts[0].Options {
		if o == "ro" {
			return "", false
		}
	}
	return filepath.Join(runtimeRoot, filepath.Clean(mounts[0].Source)), true
}

// extractLayer streams the layer from src into dir, hashing it on the way
// unless src verifies it itself, and fails when the stream does not match
// desc. Only a failure to read from src counts as ErrSource.
func (r *Runtime) extractLayer(ctx context.Context, req ImportRequest, desc ocispec.Descriptor,
	src BlobSource, dir string) error {
	rc, err := src.Open(ctx, desc, 0)
	if err != nil {
		return fmt.Errorf("%w: layer %s: %w", ErrSource, desc.Digest, err)
	}
	defer func() { _ = rc.Close() }()

	var h hash.Hash
	if v, ok := src.(DigestVerifier); !ok || !v.VerifiesDigest() {
		h = sha256.New()
	}
	// The stream is read ahead in pieces of layerWriteSize, which also
	// keeps archive.Apply's 512-byte reads of tar headers off the
	// connection.
	stream := io.LimitReader(rc, desc.Size+1)
	if h != nil {
		stream = io.TeeReader(stream, h)
	}
	ahead := newReadAhead(stream, 4, layerWriteSize)
	defer func() { _ = ahead.Close() }()
	in := &sourceReader{r: ahead, total: desc.Size, report: req.Progress}
	_, applyErr := archive.Apply(ctx, dir, in)
	// The archive may end before the stream does (tar's end blocks and
	// padding), and an extraction that failed may have failed on altered
	// content: the rest of the stream still counts towards the digest.
	_, _ = io.Copy(io.Discard, in)
	switch {
	case in.readErr != nil:
		return fmt.Errorf("%w: layer %s after %d bytes: %w", ErrSource, desc.Digest, in.done, in.readErr)
	case in.done != desc.Size:
		return fmt.Errorf("%w: layer %s: received %d bytes, want %d", ErrDigestMismatch, desc.Digest, in.done,
			desc.Size)
	case h != nil && digest.NewDigest(digest.SHA256, h) != desc.Digest:
		return fmt.Errorf("%w: layer %s: received content with digest %s", ErrDigestMismatch, desc.Digest,
			digest.NewDigest(digest.SHA256, h))
	case applyErr != nil:
		return fmt.Errorf("failed to extract layer %s into its snapshot: %w", desc.Digest, applyErr)
	}
	return nil
}

// sourceReader counts what it reads and records a read error, which
// separates a broken stream from a failed write.
type sourceReader struct {
	r      io.Reader
	done   int64
	total  int64
	report func(done, total int64)
	// reported is the value of done at the last progress report. Reports
	// are sent once per MiB.
	reported int64
	readErr  error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.done += int64(n)
		if s.done-s.reported >= 1<<20 || s.done == s.total {
			s.reported = s.done
			report(s.report, s.done, s.total)
		}
	}
	if err != nil && err != io.EOF {
		s.readErr = err
	}
	return n, err
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// readAhead reads r in a goroutine of its own, up to depth pieces of size
// bytes ahead of the consumer. Reading the stream (TLS decryption and the
// digest check of a transfer) then runs in parallel with the extraction.
// Close stops the goroutine but does not close r.
type readAhead struct {
	pieces chan []byte
	free   chan []byte
	stop   chan struct{}
	done   chan struct{}
	err    error // the read error, set before pieces is closed
	cur    []byte
	rest   []byte
}

func newReadAhead(r io.Reader, depth, size int) *readAhead {
	ra := &readAhead{pieces: make(chan []byte, depth), free: make(chan []byte, depth+1),
		stop: make(chan struct{}), done: make(chan struct{})}
	for range depth + 1 {
		ra.free <- make([]byte, size)
	}
	go ra.fill(r)
	return ra
}

func (ra *readAhead) fill(r io.Reader) {
	defer close(ra.done)
	defer close(ra.pieces)
	for {
		var buf []byte
		select {
		case buf = <-ra.free:
		case <-ra.stop:
			return
		}
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			select {
			case ra.pieces <- buf[:n]:
			case <-ra.stop:
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = io.EOF
			}
			ra.err = err
			return
		}
	}
}

func (ra *readAhead) Read(p []byte) (int, error) {
	for len(ra.rest) == 0 {
		if ra.cur != nil {
			ra.free <- ra.cur[:cap(ra.cur)]
			ra.cur = nil
		}
		piece, ok := <-ra.pieces
		if !ok {
			return 0, ra.err
		}
		ra.cur, ra.rest = piece, piece
	}
	n := copy(p, ra.rest)
	ra.rest = ra.rest[n:]
	return n, nil
}

// Close stops the reading goroutine and waits for it.
func (ra *readAhead) Close() error {
	close(ra.stop)
	<-ra.done
	return nil
}
