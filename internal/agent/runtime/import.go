package runtime

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// maxManifestBytes bounds the index, manifest and config read into memory.
const maxManifestBytes = 4 << 20

// ErrDigestMismatch reports content whose digest or size differs from the
// descriptor that names it.
var ErrDigestMismatch = errors.New("content does not match its digest")

// ErrInvalidImage reports an image that is not a checkpoint image this
// agent builds: wrong media types, several layers, no platform match.
var ErrInvalidImage = errors.New("invalid checkpoint image")

// ErrSource reports a failure of the blob source (the network or the peer),
// as opposed to a failure of the runtime.
var ErrSource = errors.New("failed to read from the image source")

// BlobSource delivers an image's blobs.
type BlobSource interface {
	// Open returns the blob desc names, from offset on. The source need not
	// verify it: the importer does.
	Open(ctx context.Context, desc ocispec.Descriptor, offset int64) (io.ReadCloser, error)
}

// DigestVerifier is implemented by a BlobSource whose readers, for a blob
// read from the start, fail at its end unless the blob matches its
// descriptor's digest and size. The importer does not hash what such a
// source delivers a second time.
type DigestVerifier interface {
	VerifiesDigest() bool
}

// ImportRequest describes an image to stream into the runtime.
type ImportRequest struct {
	// Name is the image name to create, for example
	// localhost/lpm/default/web-app:4f1d2c3b.
	Name string
	// Index names the image index by digest and size.
	Index ocispec.Descriptor
	// Labels are set on the image record.
	Labels map[string]string
	// Platform selects the manifest; the runtime's platform when nil.
	Platform *ocispec.Platform
	// Snapshotter unpacks the image; containerd's default when empty.
	Snapshotter string
	// Progress, when set, is called with the layer bytes received so far.
	Progress func(done, total int64)
	// ProcRoot is the path of the node's /proc in the importer's mount
	// namespace. When set, the layer is extracted as it arrives into a
	// snapshot through containerd's root (/proc/<containerd's PID>/root),
	// without a copy in the content store. When empty, or when the
	// snapshotter does not hand out a plain directory, the layer goes
	// through the content store and is unpacked from there.
	ProcRoot string
	// IngestPrefix starts the references of this import's content writes,
	// so that a cleanup can abort exactly its unfinished ones; "lpm-" when
	// empty.
	IngestPrefix string
}

func (req ImportRequest) ingestPrefix() string {
	if req.IngestPrefix == "" {
		return "lpm-"
	}
	return req.IngestPrefix
}

func (req ImportRequest) ingestRef(d digest.Digest) string {
	return req.ingestPrefix() + d.Encoded()
}

// ImportResult describes an imported image.
type ImportResult struct {
	// Layer is the checkpoint archive's descriptor.
	Layer ocispec.Descriptor
	// Bytes is the total size of all blobs.
	Bytes int64
	// IntoSnapshot is true when the layer went straight into its snapshot,
	// and false when it went through the content store.
	IntoSnapshot bool
}

// Import streams a checkpoint image from src into containerd, verifying
// every blob by digest as it arrives, and creates the image record. When
// req.ProcRoot allows it, the layer is extracted into its snapshot as it
// is received, so the snapshot is the only copy on this node. Otherwise
// the layer is written to the content store as it is received and then
// unpacked. A large archive is never buffered. A failed import leaves no
// content, snapshot or image behind.
func (r *Runtime) Import(ctx context.Context, req ImportRequest, src BlobSource) (*ImportResult, error) {
	// The lease's ID carries the ingest prefix, so that AbortImports also
	// deletes the lease of an import the agent did not finish.
	ctx, done, err := r.client.WithLease(ctx, leases.WithID(req.ingestPrefix()+"lease-"+randomSuffix()),
		leases.WithExpiration(6*time.Hour))
	if err != nil {
		return nil, fmt.Errorf("failed to create a containerd lease: %w", err)
	}
	defer func() { _ = done(context.WithoutCancel(ctx)) }()

	platform := platforms.DefaultSpec()
	if req.Platform != nil {
		platform = *req.Platform
	}
	index, manifestDesc, err := r.fetchIndex(ctx, req.Index, src, platform)
	if err != nil {
		return nil, err
	}
	req.Index.Size = int64(len(index))
	manifest, manifestRaw, err := fetchManifest(ctx, manifestDesc, src)
	if err != nil {
		return nil, err
	}
	configRaw, err := fetchSmall(ctx, manifest.Config, src)
	if err != nil {
		return nil, err
	}
	layer := manifest.Layers[0]
	if err := checkConfig(configRaw, layer.Digest); err != nil {
		return nil, err
	}

	cs := r.client.ContentStore()
	direct, err := r.snapshotLayer(ctx, req, layer, src)
	if err != nil {
		return nil, err
	}
	var configLabels map[string]string
	if direct {
		// The config holds the snapshot, as it does after containerd's
		// own unpacking.
		configLabels = map[string]string{labelGCSnapshotRef + req.snapshotter(): layer.Digest.String()}
	} else if err := r.ingestLayer(ctx, req, layer, src); err != nil {
		return nil, err
	}
	if err := writeSmall(ctx, cs, req, manifest.Config, configRaw, configLabels); err != nil {
		return nil, err
	}
	if err := writeSmall(ctx, cs, req, manifestDesc, manifestRaw, map[string]string{
		"containerd.io/gc.ref.content.config": manifest.Config.Digest.String(),
		"containerd.io/gc.ref.content.l.0":    layer.Digest.String(),
	}); err != nil {
		return nil, err
	}
	if err := writeSmall(ctx, cs, req, req.Index, index, map[string]string{
		"containerd.io/gc.ref.content.m.0": manifestDesc.Digest.String(),
	}); err != nil {
		return nil, err
	}

	img, err := r.createImage(ctx, req)
	if err != nil {
		return nil, err
	}
	if !direct {
		if err := containerd.NewImageWithPlatform(r.client, img, platforms.Only(platform)).
			Unpack(ctx, req.Snapshotter); err != nil {
			_ = r.RemoveImage(context.WithoutCancel(ctx), req.Name)
			return nil, fmt.Errorf("failed to unpack image %q: %w", req.Name, err)
		}
	}
	total := req.Index.Size + manifestDesc.Size + manifest.Config.Size + layer.Size
	return &ImportResult{Layer: layer, Bytes: total, IntoSnapshot: direct}, nil
}

func (r *Runtime) fetchIndex(ctx context.Context, desc ocispec.Descriptor, src BlobSource,
	platform ocispec.Platform) ([]byte, ocispec.Descriptor, error) {
	raw, err := fetchSmall(ctx, desc, src)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	var index ocispec.Index
	if err := json.Unmarshal(raw, &index); err != nil {
		return nil, ocispec.Descriptor{}, fmt.Errorf("%w: index is not JSON: %w", ErrInvalidImage, err)
	}
	if index.MediaType != ocispec.MediaTypeImageIndex {
		return nil, ocispec.Descriptor{}, fmt.Errorf("%w: index media type is %q", ErrInvalidImage,
			index.MediaType)
	}
	match := platforms.Only(platform)
	for _, m := range index.Manifests {
		if m.MediaType == ocispec.MediaTypeImageManifest && m.Platform != nil && match.Match(*m.Platform) {
			return raw, m, nil
		}
	}
	return nil, ocispec.Descriptor{}, fmt.Errorf("%w: no manifest for platform %s", ErrInvalidImage,
		platforms.Format(platform))
}

func fetchManifest(ctx context.Context, desc ocispec.Descriptor, src BlobSource) (*ocispec.Manifest,
	[]byte, error) {
	raw, err := fetchSmall(ctx, desc, src)
	if err != nil {
		return nil, nil, err
	}
	var manifest ocispec.Manifest
	if err := json.Unmarshal(raw, &manifest); err != nil {
		return nil, nil, fmt.Errorf("%w: manifest is not JSON: %w", ErrInvalidImage, err)
	}
	if manifest.Config.MediaType != ocispec.MediaTypeImageConfig {
		return nil, nil, fmt.Errorf("%w: config media type is %q", ErrInvalidImage, manifest.Config.MediaType)
	}
	if len(manifest.Layers) != 1 || manifest.Layers[0].MediaType != ocispec.MediaTypeImageLayer {
		return nil, nil, fmt.Errorf("%w: want one uncompressed layer, manifest has %d", ErrInvalidImage,
			len(manifest.Layers))
	}
	if manifest.Layers[0].Size < 0 || manifest.Config.Size < 0 {
		return nil, nil, fmt.Errorf("%w: negative blob size", ErrInvalidImage)
	}
	return &manifest, raw, nil
}

// checkConfig checks that the config's only diff ID is the layer's digest:
// the layer is uncompressed, so both must be the same.
func checkConfig(raw []byte, layer digest.Digest) error {
	var config ocispec.Image
	if err := json.Unmarshal(raw, &config); err != nil {
		return fmt.Errorf("%w: config is not JSON: %w", ErrInvalidImage, err)
	}
	if len(config.RootFS.DiffIDs) != 1 || config.RootFS.DiffIDs[0] != layer {
		return fmt.Errorf("%w: config diff IDs %v do not name the layer %s", ErrInvalidImage,
			config.RootFS.DiffIDs, layer)
	}
	return nil
}

// fetchSmall reads a small blob fully and verifies it.
func fetchSmall(ctx context.Context, desc ocispec.Descriptor, src BlobSource) ([]byte, error) {
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("%w: invalid digest %q: %w", ErrInvalidImage, desc.Digest, err)
	}
	if desc.Size > maxManifestBytes {
		return nil, fmt.Errorf("%w: blob %s has size %d, the limit is %d", ErrInvalidImage, desc.Digest,
			desc.Size, maxManifestBytes)
	}
	// A negative size means unknown: the digest alone identifies the blob.
	limit := desc.Size
	if limit < 0 {
		limit = maxManifestBytes
	}
	rc, err := src.Open(ctx, desc, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: blob %s: %w", ErrSource, desc.Digest, err)
	}
	defer func() { _ = rc.Close() }()
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: blob %s: %w", ErrSource, desc.Digest, err)
	}
	if (desc.Size >= 0 && int64(len(data)) != desc.Size) || int64(len(data)) > limit ||
		digest.FromBytes(data) != desc.Digest {
		return nil, fmt.Errorf("%w: blob %s: got %d bytes with digest %s", ErrDigestMismatch, desc.Digest,
			len(data), digest.FromBytes(data))
	}
	return data, nil
}

func writeSmall(ctx context.Context, cs content.Store, req ImportRequest, desc ocispec.Descriptor, data []byte,
	labels map[string]string) error {
	ref := req.ingestRef(desc.Digest)
	if err := content.WriteBlob(ctx, cs, ref, bytes.NewReader(data), desc, content.WithLabels(labels)); err != nil {
		return fmt.Errorf("failed to write blob %s to containerd: %w", desc.Digest, err)
	}
	return nil
}

// ingestLayer streams the layer into a content writer. An interrupted
// stream resumes at the writer's offset. A stream that does not match the
// digest is discarded, so nothing partial stays in the content store.
func (r *Runtime) ingestLayer(ctx context.Context, req ImportRequest, desc ocispec.Descriptor,
	src BlobSource) error {
	cs := r.client.ContentStore()
	if _, err := cs.Info(ctx, desc.Digest); err == nil {
		report(req.Progress, desc.Size, desc.Size)
		return nil
	}
	ref := req.ingestRef(desc.Digest)
	w, err := content.OpenWriter(ctx, cs, content.WithRef(ref), content.WithDescriptor(desc))
	if errdefs.IsAlreadyExists(err) {
		report(req.Progress, desc.Size, desc.Size)
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to open a containerd writer for %s: %w", desc.Digest, err)
	}
	defer func() { _ = w.Close() }()

	if err := copyLayer(ctx, w, req, desc, src); err != nil {
		_ = cs.Abort(context.WithoutCancel(ctx), ref)
		return err
	}
	return nil
}

// layerWriteSize is the size of each write of a layer into containerd's
// content store, well below the 16 MiB that containerd's gRPC server
// accepts in one message.
const layerWriteSize = 1 << 20

func copyLayer(ctx context.Context, w content.Writer, req ImportRequest, desc ocispec.Descriptor,
	src BlobSource) error {
	ws, err := w.Status()
	if err != nil {
		return fmt.Errorf("failed to get the status of the containerd writer: %w", err)
	}
	if ws.Offset > desc.Size {
		if err := w.Truncate(0); err != nil {
			return fmt.Errorf("failed to reset the containerd writer: %w", err)
		}
		ws.Offset = 0
	}
	rc, err := src.Open(ctx, desc, ws.Offset)
	if err != nil {
		return fmt.Errorf("%w: layer %s: %w", ErrSource, desc.Digest, err)
	}
	defer func() { _ = rc.Close() }()

	// containerd's content writer sends one request per Write and waits for
	// the response. Buffering sends the layer in writes of layerWriteSize
	// instead of the 16 KiB pieces that a TLS connection returns.
	counter := &progressWriter{w: w, done: ws.Offset, total: desc.Size, report: req.Progress}
	buffered := bufio.NewWriterSize(counter, layerWriteSize)
	n, err := io.Copy(buffered, io.LimitReader(rc, desc.Size-ws.Offset+1))
	if err == nil {
		err = buffered.Flush()
	}
	switch {
	case err != nil && counter.writeErr != nil:
		return fmt.Errorf("failed to write layer %s to containerd: %w", desc.Digest, counter.writeErr)
	case err != nil:
		return fmt.Errorf("%w: layer %s after %d bytes: %w", ErrSource, desc.Digest, ws.Offset+n, err)
	case ws.Offset+n != desc.Size:
		return fmt.Errorf("%w: layer %s: received %d bytes, want %d", ErrDigestMismatch, desc.Digest,
			ws.Offset+n, desc.Size)
	}
	if err := w.Commit(ctx, desc.Size, desc.Digest, content.WithLabels(map[string]string{
		"lpm.dev/layer-bytes": strconv.FormatInt(desc.Size, 10),
	})); err != nil && !errdefs.IsAlreadyExists(err) {
		if errdefs.IsFailedPrecondition(err) || errdefs.IsInvalidArgument(err) {
			return fmt.Errorf("%w: layer %s: %w", ErrDigestMismatch, desc.Digest, err)
		}
		return fmt.Errorf("failed to commit layer %s: %w", desc.Digest, err)
	}
	return nil
}

type progressWriter struct {
	w        io.Writer
	done     int64
	total    int64
	report   func(done, total int64)
	writeErr error
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.done += int64(n)
	if err != nil {
		p.writeErr = err
		return n, err
	}
	report(p.report, p.done, p.total)
	return n, nil
}

func report(f func(done, total int64), done, total int64) {
	if f != nil {
		f(done, total)
	}
}

func (r *Runtime) createImage(ctx context.Context, req ImportRequest) (images.Image, error) {
	store := r.client.ImageService()
	img := images.Image{Name: req.Name, Target: req.Index, Labels: req.Labels}
	created, err := store.Create(ctx, img)
	if errdefs.IsAlreadyExists(err) {
		created, err = store.Update(ctx, img)
	}
	if err != nil {
		return images.Image{}, fmt.Errorf("failed to create image %q: %w", req.Name, err)
	}
	return created, nil
}

// RemoveImage removes an image and waits for containerd to collect its
// content and snapshots. It removes the image through the CRI first, which
// also drops the references the CRI plugin added by itself (the image ID),
// and then the record itself. A missing image counts as removed. A
// reference that PointAt moved to a base image loses only its own record:
// removing it through the CRI would remove every reference of the base.
func (r *Runtime) RemoveImage(ctx context.Context, name string) error {
	img, err := r.client.ImageService().Get(ctx, name)
	moved := err == nil && img.Labels[LabelResetTo] != ""
	if !moved {
		if err := r.RemoveCRIImage(ctx, name); err != nil {
			return err
		}
	}
	err = r.client.ImageService().Delete(ctx, name, images.SynchronousDelete())
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("failed to remove image %q: %w", name, err)
	}
	return nil
}

// ListImages returns the images whose labels match a containerd filter
// such as `labels."lpm.dev/migration-uid"`.
func (r *Runtime) ListImages(ctx context.Context, filter string) ([]images.Image, error) {
	list, err := r.client.ImageService().List(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("failed to list images: %w", err)
	}
	return list, nil
}

// WaitForCRIImage polls CRI ImageStatus until the CRI plugin reports the
// image: an image created through containerd's API reaches the CRI
// plugin's cache through an event, not at once.
func (r *Runtime) WaitForCRIImage(ctx context.Context, ref string) (*runtimeapi.Image, error) {
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	for {
		resp, err := r.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{
			Image: &runtimeapi.ImageSpec{Image: ref}})
		if err == nil && resp.GetImage() != nil {
			return resp.GetImage(), nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = errors.New("image not reported")
			}
			return nil, fmt.Errorf("CRI ImageStatus did not report image %q in time: %w", ref, err)
		case <-ticker.C:
		}
	}
}

// CRIImageStatus returns the CRI's view of an image, nil when it does not
// know it.
func (r *Runtime) CRIImageStatus(ctx context.Context, ref string) (*runtimeapi.Image, error) {
	resp, err := r.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		return nil, fmt.Errorf("failed to get CRI image status of %q: %w", ref, err)
	}
	return resp.GetImage(), nil
}

// PullImage pulls an image through the CRI, as the kubelet would, with
// optional registry credentials.
func (r *Runtime) PullImage(ctx context.Context, ref string, auth *runtimeapi.AuthConfig) (string, error) {
	resp, err := r.images.PullImage(ctx, &runtimeapi.PullImageRequest{
		Image: &runtimeapi.ImageSpec{Image: ref}, Auth: auth})
	if err != nil {
		return "", fmt.Errorf("failed to pull image %q: %w", ref, err)
	}
	return resp.GetImageRef(), nil
}

// RemoveCRIImage removes an image through the CRI. A missing image counts
// as removed.
func (r *Runtime) RemoveCRIImage(ctx context.Context, ref string) error {
	_, err := r.images.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil && status.Code(err) != codes.NotFound {
		return fmt.Errorf("failed to remove image %q through the CRI: %w", ref, err)
	}
	return nil
}

// RestoreAnnotation is the container annotation containerd (2.1 to 2.3)
// sets to "true" on a container it restored from a checkpoint.
const RestoreAnnotation = "restored"

// ContainerRestored reports whether the runtime restored a container from
// a checkpoint rather than starting it fresh.
func (r *Runtime) ContainerRestored(ctx context.Context, containerID string) (bool, error) {
	resp, err := r.cri.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: containerID})
	if err != nil {
		return false, fmt.Errorf("failed to get CRI status of container %s: %w", containerID, err)
	}
	return resp.GetStatus().GetAnnotations()[RestoreAnnotation] == "true", nil
}

// ImagesInUse returns the image references and image IDs of every
// container the CRI lists, running or not.
func (r *Runtime) ImagesInUse(ctx context.Context) (map[string]bool, error) {
	resp, err := r.cri.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return nil, fmt.Errorf("failed to list containers: %w", err)
	}
	used := map[string]bool{}
	for _, c := range resp.GetContainers() {
		used[c.GetImage().GetImage()] = true
		used[c.GetImage().GetUserSpecifiedImage()] = true
		used[c.GetImageRef()] = true
		used[c.GetImageId()] = true
	}
	delete(used, "")
	return used, nil
}

// AbortImports discards what broken transfers left behind: unfinished
// content writes whose reference starts with prefix, extraction snapshots
// of the snapshotter whose key, after "extract-", starts with prefix, and
// the imports' leases, whose IDs start with prefix. It keeps those for
// which keep (which may be nil) returns true, given the reference, the key
// without "extract-" or the lease ID.
func (r *Runtime) AbortImports(ctx context.Context, snapshotter, prefix string, keep func(ref string) bool) error {
	discard := func(ref string) bool { return strings.HasPrefix(ref, prefix) && (keep == nil || !keep(ref)) }
	cs := r.client.ContentStore()
	statuses, err := cs.ListStatuses(ctx)
	if err != nil {
		return fmt.Errorf("failed to list content ingests: %w", err)
	}
	var errs []error
	for _, st := range statuses {
		if discard(st.Ref) {
			if err := cs.Abort(ctx, st.Ref); err != nil && !errdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("failed to abort ingest %s: %w", st.Ref, err))
			}
		}
	}

	req := ImportRequest{Snapshotter: snapshotter}
	sn := r.client.SnapshotService(req.snapshotter())
	var keys []string
	err = sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		ref, ok := strings.CutPrefix(info.Name, snapshots.UnpackKeyPrefix+"-")
		if ok && info.Kind == snapshots.KindActive && discard(ref) {
			keys = append(keys, info.Name)
		}
		return nil
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("failed to list snapshots: %w", err))
	}
	for _, key := range keys {
		if err := sn.Remove(ctx, key); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("failed to remove extraction snapshot %q: %w", key, err))
		}
	}

	ls := r.client.LeasesService()
	existing, err := ls.List(ctx)
	if err != nil {
		errs = append(errs, fmt.Errorf("failed to list leases: %w", err))
	}
	for _, l := range existing {
		if discard(l.ID) {
			if err := ls.Delete(ctx, l); err != nil && !errdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("failed to delete lease %s: %w", l.ID, err))
			}
		}
	}
	return errors.Join(errs...)
}
