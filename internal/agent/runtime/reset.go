package runtime

import (
	"context"
	"fmt"
	"maps"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"
)

// LabelResetTo marks an image reference that PointAt pointed at another
// image. Its value is that image's reference.
const LabelResetTo = "lpm.dev/reset-to"

// PointAt makes the image reference name resolve to the image base, whose
// reference is baseRef, keeping the reference's labels. It first removes the
// image name referred to through the CRI, which also drops the ID reference
// the CRI plugin added for it, so that image's content and snapshots are
// collected. A reference that PointAt already moved is left alone.
// NOTE: between the removal and the new record the name resolves to no
// image, so a container created from it in that moment fails to start and
// is retried by the kubelet.
func (r *Runtime) PointAt(ctx context.Context, name, baseRef string, base images.Image) error {
	store := r.client.ImageService()
	img, err := store.Get(ctx, name)
	if err != nil {
		return fmt.Errorf("failed to get image %q: %w", name, err)
	}
	if img.Labels[LabelResetTo] != "" {
		return nil
	}
	if err := r.RemoveCRIImage(ctx, name); err != nil {
		return err
	}
	labels := maps.Clone(img.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelResetTo] = baseRef
	moved := images.Image{Name: name, Target: base.Target, Labels: labels}
	if _, err := store.Create(ctx, moved); errdefs.IsAlreadyExists(err) {
		_, err = store.Update(ctx, moved, "target", "labels")
		if err != nil {
			return fmt.Errorf("failed to point image %q at %s: %w", name, baseRef, err)
		}
	} else if err != nil {
		return fmt.Errorf("failed to point image %q at %s: %w", name, baseRef, err)
	}
	return nil
}
