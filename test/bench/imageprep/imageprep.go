// Package imageprep measures how a checkpoint archive becomes an image that
// the target node's CRI can restore from, by lpm's code and by the manual
// recipe that the Kubernetes documentation gives (buildah from scratch, add
// the archive, annotate, commit, push to an OCI archive, copy it and
// `ctr images import` it on the target). It also measures lpm's direct
// transfer channel against a plain TCP copy of the same bytes.
package imageprep

import (
	"context"
	"fmt"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/lpm-dev/lpm/internal/agent/archive"
	"github.com/lpm-dev/lpm/internal/agent/ckptimage"
	"github.com/lpm-dev/lpm/internal/agent/runtime"
)

// Source names the checkpointed container an archive belongs to.
type Source struct {
	// ArchivePath is the archive's host path.
	ArchivePath string
	Container   string
	Pod         string
	Namespace   string
	PodUID      string
	// ID makes the image names of one run unique.
	ID string
}

// Build runs lpm's source side: one pass over the archive that hashes
// and validates it, then the checkpoint image around it.
func Build(src Source) (*ckptimage.Image, time.Duration, error) {
	start := time.Now()
	f, err := os.Open(src.ArchivePath)
	if err != nil {
		return nil, 0, err
	}
	info, err := archive.Inspect(f, archive.Limits{})
	_ = f.Close()
	if err != nil {
		return nil, 0, fmt.Errorf("invalid archive %s: %w", src.ArchivePath, err)
	}
	img, err := ckptimage.Build(ckptimage.Source{ArchivePath: src.ArchivePath, Archive: info,
		Container: src.Container, Pod: src.Pod, Namespace: src.Namespace, PodUID: src.PodUID,
		MigrationUID: src.ID, Platform: v1.Platform{OS: "linux", Architecture: "amd64"}})
	if err != nil {
		return nil, 0, err
	}
	return img, time.Since(start), nil
}

// Import streams img from blobs into the target's containerd as name and
// waits until the CRI reports it. procRoot is the target node's /proc as
// the bench process reaches it, and the layer then goes straight into its
// snapshot, as the agent does it. With an empty procRoot the import takes
// the agent's other path: the layer goes into the content store and is
// unpacked from there.
func Import(ctx context.Context, rt *runtime.Runtime, img *ckptimage.Image, blobs runtime.BlobSource,
	name, procRoot string) (time.Duration, error) {
	start := time.Now()
	res, err := rt.Import(ctx, runtime.ImportRequest{Name: name, Index: img.Descriptor(),
		IngestPrefix: "lpm-bench-", ProcRoot: procRoot}, blobs)
	if err != nil {
		return 0, err
	}
	if res.IntoSnapshot != (procRoot != "") {
		return 0, fmt.Errorf("import of %s: into the snapshot = %v, want %v", name, res.IntoSnapshot,
			procRoot != "")
	}
	if _, err := rt.WaitForCRIImage(ctx, name); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}
