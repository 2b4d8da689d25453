package agent

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// recordBaseImageIDs adds the ID (config digest) of each container's base
// image on this node to the source's report, so the target can check that
// it restores onto exactly that image.
func (a *Agent) recordBaseImageIDs(ctx context.Context, stats []lpmv1.SourceContainerStatus) {
	for i := range stats {
		if stats[i].BaseImage == "" {
			continue
		}
		img, err := a.runtime.CRIImageStatus(ctx, stats[i].BaseImage)
		if err != nil || img == nil {
			logf.FromContext(ctx).Info("Base image not found on the source node", "image", stats[i].BaseImage)
			continue
		}
		stats[i].BaseImageID = img.GetId()
	}
}

// checkBaseImages makes sure that this node holds, under the reference the
// checkpoint names, exactly the image each container was checkpointed on,
// because CRIU fails with "bad size" on a file of another image. A bare
// image ID (the source imported the image rather than pulled it) cannot be
// pulled, so it must already be here. Any other reference is pulled when
// missing. A reference that resolves to another image ID here, as a tag
// that now points elsewhere does, is rejected.
func (a *Agent) checkBaseImages(ctx context.Context, pm *lpmv1.PodMigration) (lpmv1.Reason, error) {
	for _, c := range pm.Status.Source.Containers {
		if c.BaseImage == "" {
			continue
		}
		img, err := a.runtime.CRIImageStatus(ctx, c.BaseImage)
		if err != nil {
			return lpmv1.ReasonImportFailed, err
		}
		if img == nil {
			if isImageID(c.BaseImage) {
				return lpmv1.ReasonBaseImageUnavailable, fmt.Errorf("base image %s of container %s is not on "+
					"node %s and cannot be pulled: the source node imported it rather than pulled it. Import "+
					"the same image on node %s", c.BaseImage, c.Name, a.opts.NodeName, a.opts.NodeName)
			}
			pullCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			_, err := a.runtime.PullImage(pullCtx, c.BaseImage, nil)
			cancel()
			if err != nil {
				return lpmv1.ReasonBaseImageUnavailable, fmt.Errorf("base image %s of container %s is missing "+
					"and the pull failed: %w", c.BaseImage, c.Name, err)
			}
			if img, err = a.runtime.CRIImageStatus(ctx, c.BaseImage); err != nil || img == nil {
				return lpmv1.ReasonBaseImageUnavailable, fmt.Errorf("base image %s of container %s is not "+
					"reported after its pull", c.BaseImage, c.Name)
			}
		}
		if c.BaseImageID != "" && img.GetId() != c.BaseImageID {
			return lpmv1.ReasonBaseImageMismatch, fmt.Errorf("base image %s of container %s is image %s on node "+
				"%s but was %s on the source node when it was checkpointed; its tag now points elsewhere. Pin "+
				"the pod's image by digest", c.BaseImage, c.Name, img.GetId(), a.opts.NodeName, c.BaseImageID)
		}
	}
	return "", nil
}

func isImageID(ref string) bool {
	id, ok := strings.CutPrefix(ref, "sha256:")
	return ok && len(id) == 64 && !strings.ContainsAny(id, "/:@")
}

// resetCheckpointImages points each checkpoint image reference of a
// succeeded migration at its container's base image. containerd 2.3
// restores a checkpoint image on every CreateContainer. Without the reset,
// a restored container that restarts (crash, liveness probe, out of
// memory) would restore the stale checkpoint again. With it, a restart
// starts fresh from the original image, as it would have on the source.
// The CRI plugin follows the change through containerd's image events.
func (a *Agent) resetCheckpointImages(ctx context.Context, pm *lpmv1.PodMigration) error {
	bases := map[string]string{}
	for _, c := range pm.Status.Source.Containers {
		bases[c.Name] = c.BaseImage
	}
	for _, c := range pm.Status.Target.Containers {
		base := bases[c.Name]
		if c.Image == "" || base == "" {
			continue
		}
		baseRecord, err := a.baseImageRecord(ctx, base)
		if err != nil {
			return err
		}
		if err := a.runtime.PointAt(ctx, c.Image, base, baseRecord); err != nil {
			return err
		}
		logf.FromContext(ctx).Info("Pointed the checkpoint image at its base image", "image", c.Image,
			"baseImage", base)
	}
	return nil
}

// baseImageRecord returns containerd's record of an image by any name the
// CRI plugin gave it: the reference itself, its repository digests and
// tags, or its ID.
func (a *Agent) baseImageRecord(ctx context.Context, ref string) (images.Image, error) {
	store := a.runtime.Client().ImageService()
	names := []string{ref}
	if img, err := a.runtime.CRIImageStatus(ctx, ref); err == nil && img != nil {
		names = append(names, img.GetRepoDigests()...)
		names = append(names, img.GetRepoTags()...)
		names = append(names, img.GetId())
	}
	for _, name := range names {
		if record, err := store.Get(ctx, name); err == nil {
			return record, nil
		}
	}
	return images.Image{}, fmt.Errorf("base image %s not found in the runtime", ref)
}
