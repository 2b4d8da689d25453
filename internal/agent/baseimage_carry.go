package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/agent/runtime"
	"github.com/lpm-dev/lpm/internal/agent/transfer"
)

// authorizeBaseImage decides whether the agent of peerNode may read the base
// image of a container of a migration whose source is thisNode, and returns
// the reference of that image as the source runtime records it. pm and pod
// are the PodMigration and the migrated pod as this node reads them now
// (nil when they do not exist). Only the target agent of an active
// migration from this node may read it, and only the image of a container
// of the migrated pod.
func authorizeBaseImage(pm *lpmv1.PodMigration, pod *corev1.Pod, req transfer.BaseImageRequest, peerNode,
	thisNode string) (string, error) {
	switch {
	case pm == nil:
		return "", fmt.Errorf("%w: PodMigration %s/%s does not exist", transfer.ErrForbidden, req.Namespace,
			req.Name)
	case string(pm.UID) != req.MigrationUID:
		return "", fmt.Errorf("%w: PodMigration %s/%s has UID %s, not %s", transfer.ErrForbidden, req.Namespace,
			req.Name, pm.UID, req.MigrationUID)
	case pm.DeletionTimestamp != nil || pm.Status.Phase == lpmv1.PhaseFailed ||
		pm.Status.Phase == lpmv1.PhaseSucceeded:
		return "", fmt.Errorf("%w: PodMigration %s/%s has ended", transfer.ErrForbidden, req.Namespace, req.Name)
	case pm.Status.SourceNode != thisNode:
		return "", fmt.Errorf("%w: PodMigration %s/%s moves a pod from node %q, not from this node %s",
			transfer.ErrForbidden, req.Namespace, req.Name, pm.Status.SourceNode, thisNode)
	case pm.Status.TargetNode == "" || pm.Status.TargetNode != peerNode:
		return "", fmt.Errorf("%w: PodMigration %s/%s moves its pod to node %q, not to the caller's node %q",
			transfer.ErrForbidden, req.Namespace, req.Name, pm.Status.TargetNode, peerNode)
	case pod == nil || pod.Namespace != pm.Namespace || pod.Name != pm.Spec.PodName ||
		pod.Spec.NodeName != thisNode:
		return "", fmt.Errorf("%w: pod %s/%s of PodMigration %s is not on this node %s", transfer.ErrForbidden,
			pm.Namespace, pm.Spec.PodName, req.Name, thisNode)
	case pm.Status.SourcePodUID != "" && string(pod.UID) != pm.Status.SourcePodUID:
		return "", fmt.Errorf("%w: pod %s/%s was replaced by another pod of the same name", transfer.ErrForbidden,
			pod.Namespace, pod.Name)
	}
	for _, s := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...),
		pod.Status.ContainerStatuses...) {
		if s.Name != req.Container {
			continue
		}
		if ref := containerImageRef(s); ref != "" {
			return ref, nil
		}
		return "", fmt.Errorf("%w: container %s of pod %s reports no image", transfer.ErrNotFound, s.Name, pod.Name)
	}
	return "", fmt.Errorf("%w: pod %s/%s has no container %q", transfer.ErrForbidden, pod.Namespace, pod.Name,
		req.Container)
}

// containerImageRef returns the reference under which the runtime stores a
// container's image: the image ID the kubelet reports (the CRI's image
// reference, a repository digest or a bare image ID), else its image.
func containerImageRef(s corev1.ContainerStatus) string {
	if s.ImageID != "" {
		return s.ImageID
	}
	return s.Image
}

// baseImageServer serves the base images of the pods this node's agent
// moves away (transfer.BaseImages).
type baseImageServer struct {
	// client reads pods from the cache. reader reads PodMigrations from
	// the API server, because the target agent may act on a target node
	// that this node's cache has not seen yet.
	client   client.Reader
	reader   client.Reader
	runtime  *runtime.Runtime
	nodeName string
	platform ocispec.Platform
}

// BaseImage implements transfer.BaseImages.
func (b *baseImageServer) BaseImage(ctx context.Context, peer *transfer.Peer,
	req transfer.BaseImageRequest) (*transfer.BaseImage, error) {
	pm := &lpmv1.PodMigration{}
	if err := b.reader.Get(ctx, types.NamespacedName{Namespace: req.Namespace, Name: req.Name}, pm); err != nil {
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("failed to get PodMigration %s/%s: %w", req.Namespace, req.Name, err)
		}
		pm = nil
	}
	var pod *corev1.Pod
	if pm != nil {
		pod = &corev1.Pod{}
		err := b.client.Get(ctx, types.NamespacedName{Namespace: pm.Namespace, Name: pm.Spec.PodName}, pod)
		if err != nil {
			if !apierrors.IsNotFound(err) {
				return nil, fmt.Errorf("failed to get pod %s/%s: %w", pm.Namespace, pm.Spec.PodName, err)
			}
			pod = nil
		}
	}
	ref, err := authorizeBaseImage(pm, pod, req, peer.NodeName, b.nodeName)
	if err != nil {
		return nil, err
	}

	record, imageID, err := b.imageRecord(ctx, ref)
	if err != nil {
		return nil, err
	}
	ic, err := b.runtime.ImageContent(ctx, record, imageID, b.platform)
	if errors.Is(err, runtime.ErrBaseImageNotServed) {
		return nil, fmt.Errorf("%w: %w", transfer.ErrNotFound, err)
	}
	if err != nil {
		return nil, err
	}
	blobs := map[digest.Digest]ocispec.Descriptor{}
	for _, d := range ic.Blobs() {
		blobs[d.Digest] = d
	}
	return &transfer.BaseImage{Root: ic.Root, Blobs: blobs,
		Open: func(ctx context.Context, desc ocispec.Descriptor) (transfer.BlobReader, error) {
			return b.runtime.OpenBlob(ctx, desc)
		}}, nil
}

// imageRecord returns containerd's record of an image the CRI looks up by ref,
// and the image's ID.
func (b *baseImageServer) imageRecord(ctx context.Context, ref string) (images.Image, digest.Digest, error) {
	img, err := b.runtime.CRIImageStatus(ctx, ref)
	if err != nil {
		return images.Image{}, "", err
	}
	if img == nil {
		return images.Image{}, "", fmt.Errorf("%w: image %s is not on this node", transfer.ErrNotFound, ref)
	}
	id, err := digest.Parse(img.GetId())
	if err != nil {
		return images.Image{}, "", fmt.Errorf("invalid image ID %q of image %s: %w", img.GetId(), ref, err)
	}
	store := b.runtime.Client().ImageService()
	names := append(append([]string{ref}, img.GetRepoDigests()...), img.GetRepoTags()...)
	for _, name := range append(names, img.GetId()) {
		if record, err := store.Get(ctx, name); err == nil {
			return record, id, nil
		}
	}
	return images.Image{}, "", fmt.Errorf("%w: image %s not found in the runtime", transfer.ErrNotFound, ref)
}

// baseImageAnchors returns what a container's image reference fixes of the
// image: the digest of its root (index or manifest) for a repository
// digest, the config digest for a bare image ID. knownID is the ID the
// source recorded, when it did.
func baseImageAnchors(ref, knownID string) (root, id digest.Digest) {
	if isImageID(ref) {
		id = digest.Digest(ref)
	} else if named, err := reference.ParseAnyReference(ref); err == nil {
		if canonical, ok := named.(reference.Canonical); ok {
			root = canonical.Digest()
		}
	}
	if knownID != "" {
		id = digest.Digest(knownID)
	}
	return root, id
}

// baseImageOutcome records how the target agent obtained one base image.
type baseImageOutcome struct {
	ref     string
	pulled  bool
	carried *runtime.CarryResult
}

// ensureBaseImage makes the image a container runs available here, by the
// exact reference the runtime recorded (its digest when it was pulled),
// which is what the checkpoint names as its base. When the image is
// missing it pulls it, unless the reference is a bare image ID, which no
// registry serves. When that is not possible or fails, it carries the
// image from the source node's agent. The pull may take half of the time
// until ctx's deadline, so the carry keeps the other half.
func (a *Agent) ensureBaseImage(ctx context.Context, pm *lpmv1.PodMigration,
	s corev1.ContainerStatus) (baseImageOutcome, error) {
	ref := containerImageRef(s)
	out := baseImageOutcome{ref: ref}
	if img, err := a.runtime.CRIImageStatus(ctx, ref); err == nil && img != nil {
		return out, nil
	}

	var tried string
	if isImageID(ref) {
		tried = "it cannot be pulled because the source node imported it rather than pulled it"
	} else {
		pullCtx, cancel := context.WithTimeout(ctx, halfUntilDeadline(ctx, a.clock.Now()))
		_, err := a.runtime.PullImage(pullCtx, ref, nil)
		cancel()
		if err == nil {
			out.pulled = true
			return out, nil
		}
		tried = fmt.Sprintf("the pull failed (%v)", err)
		logf.FromContext(ctx).Info("Failed to pull a missing base image; carrying it from the source node",
			"image", ref, "container", s.Name, "error", err.Error())
	}

	res, err := a.carryBaseImage(ctx, pm, s.Name, ref)
	if err != nil {
		return out, fmt.Errorf("base image %s of container %s is missing on node %s: %s, and carrying it from "+
			"node %s failed: %w", ref, s.Name, a.opts.NodeName, tried, pm.Status.SourceNode, err)
	}
	out.carried = res
	return out, nil
}

// halfUntilDeadline returns half of the time left until ctx's deadline, or
// an unbounded duration when ctx has none.
func halfUntilDeadline(ctx context.Context, now time.Time) time.Duration {
	deadline, ok := ctx.Deadline()
	if !ok {
		return time.Duration(1<<63 - 1)
	}
	return deadline.Sub(now) / 2
}

// carryBaseImage copies a container's base image from the source node's
// agent over the authenticated transfer channel, and checks that the CRI
// then reports it with the image ID it has on the source node.
func (a *Agent) carryBaseImage(ctx context.Context, pm *lpmv1.PodMigration, container,
	ref string) (*runtime.CarryResult, error) {
	na := &lpmv1.NodeAgent{}
	if err := a.client.Get(ctx, types.NamespacedName{Name: pm.Status.SourceNode}, na); err != nil {
		return nil, fmt.Errorf("failed to get NodeAgent %s: %w", pm.Status.SourceNode, err)
	}
	if na.Status.Endpoint == "" || na.Status.ServingCertificateSHA256 == "" {
		return nil, fmt.Errorf("NodeAgent %s publishes no transfer endpoint or certificate", na.Name)
	}
	var knownID string
	if pm.Status.Source != nil {
		for _, c := range pm.Status.Source.Containers {
			if c.Name == container {
				knownID = c.BaseImageID
			}
		}
	}
	wantRoot, wantID := baseImageAnchors(ref, knownID)

	src := a.fetcher.BaseImageSource(na.Status.Endpoint, na.Status.ServingCertificateSHA256,
		transfer.BaseImageRequest{Namespace: pm.Namespace, Name: pm.Name, MigrationUID: string(pm.UID),
			Container: container})
	root, data, err := src.Root(ctx, wantRoot)
	if err != nil {
		return nil, err
	}
	var names []string
	if !isImageID(ref) {
		names = append(names, ref)
	}
	res, err := a.runtime.CarryImage(ctx, runtime.CarryRequest{Names: names, Root: root, RootData: data,
		ImageID: wantID, Platform: a.opts.Platform, Snapshotter: a.opts.Snapshotter,
		IngestPrefix: ingestPrefix(string(pm.UID)) + "base-"}, src)
	if err != nil {
		return nil, err
	}

	waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	img, err := a.runtime.WaitForCRIImage(waitCtx, ref)
	if err != nil {
		return nil, err
	}
	if img.GetId() != res.ImageID.String() || (wantID != "" && img.GetId() != wantID.String()) {
		return nil, fmt.Errorf("the CRI reports image %s as %s after the carry, want %s", ref, img.GetId(),
			res.ImageID)
	}
	logf.FromContext(ctx).Info("Carried a base image from the source node", "image", ref, "imageID", img.GetId(),
		"container", container, "layers", res.Layers, "layersCarried", res.LayersCarried,
		"layerBytes", res.LayerBytes)
	return res, nil
}

// baseImageMessage summarises, for the Prepared condition, how this node
// came to hold the base images it lacked.
func baseImageMessage(outcomes []baseImageOutcome, sourceNode string) string {
	var parts []string
	for _, o := range outcomes {
		switch {
		case o.pulled:
			parts = append(parts, fmt.Sprintf("pulled %s", o.ref))
		case o.carried != nil:
			parts = append(parts, fmt.Sprintf("carried %s from node %s (%d of %d layers, %d bytes)", o.ref,
				sourceNode, o.carried.LayersCarried, o.carried.Layers, o.carried.LayerBytes))
		}
	}
	return strings.Join(parts, "; ")
}
