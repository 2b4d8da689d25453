package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/agent/ckptimage"
	"github.com/lpm-dev/lpm/internal/agent/state"
	"github.com/lpm-dev/lpm/internal/agent/transfer"
	"github.com/lpm-dev/lpm/internal/agent/volumeimage"
	"github.com/lpm-dev/lpm/internal/volumedata"
)

// This file carries the contents of the source pod's emptyDir volumes. The
// source agent measures them before the cut (volumeCheck), packs them into
// the volume data image while the source is frozen (startVolumePack),
// serves or pushes that image with the checkpoint images, and the target
// agent imports it (importVolumeData). The controller adds the init
// container that runs it to the restored pod.

// DefaultMaxVolumeDataBytes is the default bound on the emptyDir volumes'
// contents that one migration carries: 1 GiB, the pod size the default
// timeouts suit.
const DefaultMaxVolumeDataBytes = 1 << 30

// podVolumes returns the pod's emptyDir volumes that can hold data, at
// their paths in the agent's file system. A memory-backed volume must be a tmpfs in the agent's
// view: a plain directory there means the kubelet's mount did not
// propagate to the agent, which would carry an empty volume.
func (a *Agent) podVolumes(pod *corev1.Pod) ([]volumedata.Volume, lpmv1.Reason, error) {
	var out []volumedata.Volume
	for _, v := range pod.Spec.Volumes {
		if v.EmptyDir == nil {
			continue
		}
		dir := volumedata.PodVolumeDir(a.opts.KubeletPodsDir, string(pod.UID), v.Name)
		switch medium := v.EmptyDir.Medium; medium {
		case corev1.StorageMediumDefault:
		case corev1.StorageMediumMemory:
			var fs unix.Statfs_t
			if err := unix.Statfs(dir, &fs); err != nil {
				return nil, lpmv1.ReasonAgentCannotCheckpoint, fmt.Errorf("failed to read emptyDir volume %s: %w",
					v.Name, err)
			}
			if fs.Type != unix.TMPFS_MAGIC {
				return nil, lpmv1.ReasonAgentCannotCheckpoint, fmt.Errorf("memory-backed emptyDir volume %s "+
					"is not a tmpfs at %s in the agent's view; mount the kubelet's pods directory into the "+
					"agent with mountPropagation HostToContainer", v.Name, dir)
			}
		default:
			return nil, lpmv1.ReasonUnsupportedVolumeContent, fmt.Errorf("emptyDir volume %s has medium %s; "+
				"only disk-backed and Memory volumes can move", v.Name, medium)
		}
		out = append(out, volumedata.Volume{Name: v.Name, Dir: dir})
	}
	return out, "", nil
}

func (a *Agent) volumeLimits() volumedata.Limits {
	return volumedata.Limits{MaxDataBytes: a.opts.MaxVolumeDataBytes}
}

// volumeCheck measures the pod's emptyDir volumes before the cut, so that a
// pod whose volumes cannot move is rejected while it runs untouched. It
// returns a phrase for the Prepared message.
func (a *Agent) volumeCheck(ctx context.Context, pod *corev1.Pod) (string, lpmv1.Reason, error) {
	volumes, reason, err := a.podVolumes(pod)
	if err != nil || len(volumes) == 0 {
		return "", reason, err
	}
	// Regular init containers, such as the copier of an earlier move, are
	// not part of the restored pod.
	var kept []corev1.Container
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			kept = append(kept, c)
		}
	}
	for _, c := range append(kept, pod.Spec.Containers...) {
		if c.Name == volumedata.ContainerName {
			return "", lpmv1.ReasonUnsupportedVolumeContent, fmt.Errorf("pod %s has a container named %s, the "+
				"name of the init container that restores its emptyDir volumes", pod.Name, c.Name)
		}
	}
	stats, err := volumedata.Measure(ctx, volumes, a.volumeLimits())
	if errors.Is(err, fs.ErrNotExist) {
		return "", lpmv1.ReasonAgentCannotCheckpoint, fmt.Errorf("the agent of node %s cannot find the emptyDir "+
			"volumes of pod %s below %s; check its --kubelet-pods-dir and the mount of the kubelet's pods "+
			"directory: %w", a.opts.NodeName, pod.Name, a.opts.KubeletPodsDir, err)
	}
	if err != nil {
		return "", volumeReason(err), a.volumeError(pod, err)
	}
	if stats.Entries > 0 {
		if _, err := os.Stat(a.opts.VolumeCopierPath); err != nil {
			return "", lpmv1.ReasonUnsupportedVolumeContent, fmt.Errorf("the emptyDir volumes of pod %s hold "+
				"data, and the agent of node %s has no copier program to restore them: %w", pod.Name,
				a.opts.NodeName, err)
		}
	}
	return fmt.Sprintf("its %d emptyDir volumes hold %d bytes in %d entries", len(volumes), stats.DataBytes,
		stats.Entries), "", nil
}

func volumeReason(err error) lpmv1.Reason {
	switch {
	case errors.Is(err, volumedata.ErrTooLarge):
		return lpmv1.ReasonVolumeTooLarge
	case errors.Is(err, volumedata.ErrUnsupported):
		return lpmv1.ReasonUnsupportedVolumeContent
	case errors.Is(err, context.DeadlineExceeded):
		return lpmv1.ReasonCheckpointTimedOut
	}
	return lpmv1.ReasonCheckpointFailed
}

func (a *Agent) volumeError(pod *corev1.Pod, err error) error {
	if errors.Is(err, volumedata.ErrTooLarge) {
		return fmt.Errorf("the emptyDir volumes of pod %s hold more than %d bytes, the limit of the agent on "+
			"node %s (--max-volume-data-bytes): %w", pod.Name, a.opts.MaxVolumeDataBytes, a.opts.NodeName, err)
	}
	return fmt.Errorf("emptyDir volumes of pod %s: %w", pod.Name, err)
}

// volumeLayerPath returns the file of a migration's volume data layer, in
// the agent's state directory (mode 0700), so only root reads it.
func (a *Agent) volumeLayerPath(uid string) string {
	return filepath.Join(a.store.Dir(), "volumes", uid+".tar")
}

// startVolumePack starts packing the pod's emptyDir volumes into the volume
// data image right after the cut, while the kubelet checkpoints the frozen
// containers. The returned function waits for it and records the image in
// rec; rec must not be saved by anyone else until then. A pod without an
// emptyDir volume, or whose volumes are all empty, gets no image.
func (a *Agent) startVolumePack(ctx context.Context, pm *lpmv1.PodMigration, pod *corev1.Pod, rec *state.Record,
	containers []podContainer) (func() (lpmv1.Reason, error), error) {
	volumes, _, err := a.podVolumes(pod)
	if err != nil {
		return nil, a.volumeError(pod, err)
	}
	if len(volumes) == 0 {
		return func() (lpmv1.Reason, error) { return "", nil }, nil
	}
	path := a.volumeLayerPath(string(pm.UID))
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("failed to create the volume data directory: %w", err)
	}
	rec.VolumeData = &state.Container{Name: volumedata.ContainerName, ArchivePath: path}
	if err := a.store.Save(rec); err != nil {
		return nil, err
	}
	_ = os.Remove(path)
	src := volumeimage.Source{LayerPath: path, CopierPath: a.opts.VolumeCopierPath, Volumes: volumes,
		Limits: a.volumeLimits(), MigrationUID: string(pm.UID), User: a.copierUser(ctx, pod, containers),
		Created: *rec.CutTime, Platform: v1.Platform{OS: a.opts.Platform.OS,
			Architecture: a.opts.Platform.Architecture, Variant: a.opts.Platform.Variant}}

	type result struct {
		img   *ckptimage.Image
		stats volumedata.Stats
		err   error
	}
	done := make(chan result, 1)
	start := a.clock.Now()
	go func() {
		img, stats, err := volumeimage.Build(ctx, src)
		done <- result{img: img, stats: stats, err: err}
	}()

	return func() (lpmv1.Reason, error) {
		r := <-done
		if r.err != nil {
			return volumeReason(r.err), a.volumeError(pod, r.err)
		}
		logf.FromContext(ctx).Info("Packed emptyDir volumes", "volumes", len(volumes), "dataBytes",
			r.stats.DataBytes, "entries", r.stats.Entries, "skippedSockets", r.stats.SkippedSockets,
			"duration", a.clock.Since(start))
		if r.stats.Entries == 0 {
			_ = os.Remove(path)
			rec.VolumeData = nil
			return "", nil
		}
		rec.VolumeData.Index, rec.VolumeData.Manifest, rec.VolumeData.Config = r.img.Index, r.img.Manifest,
			r.img.Config
		rec.VolumeData.ArchiveBytes = r.img.Layer.Size
		return "", nil
	}, nil
}

// copierUser returns the user the volume data image runs as unless the pod
// sets one: the effective user and group of the first app container's
// process, so that a pod with runAsNonRoot and no runAsUser admits it.
// Root, or a user the agent cannot read, gives the image no user.
func (a *Agent) copierUser(ctx context.Context, pod *corev1.Pod, containers []podContainer) string {
	if len(pod.Spec.Containers) == 0 {
		return ""
	}
	for _, c := range containers {
		if c.name != pod.Spec.Containers[0].Name {
			continue
		}
		pid, err := a.runtime.TaskPID(ctx, c.id)
		if err != nil {
			return ""
		}
		data, err := os.ReadFile(filepath.Join(a.opts.ProcRoot, strconv.FormatUint(uint64(pid), 10), "status"))
		if err != nil {
			return ""
		}
		uid, gid := effectiveIDs(string(data))
		if uid <= 0 || gid < 0 {
			return ""
		}
		return fmt.Sprintf("%d:%d", uid, gid)
	}
	return ""
}

// effectiveIDs returns the effective user and group of a
// /proc/<pid>/status, or -1 for one it lacks.
func effectiveIDs(status string) (uid, gid int) {
	uid, gid = -1, -1
	for _, line := range strings.Split(status, "\n") {
		key, value, ok := strings.Cut(line, ":")
		fields := strings.Fields(value)
		if !ok || len(fields) < 2 {
			continue
		}
		n, err := strconv.Atoi(fields[1])
		if err != nil {
			continue
		}
		switch key {
		case "Uid":
			uid = n
		case "Gid":
			gid = n
		}
	}
	return uid, gid
}

// volumeImage returns the record's volume data image, or nil when the
// migration carries none.
func volumeImage(rec *state.Record) (*ckptimage.Image, error) {
	if rec == nil || rec.VolumeData == nil || rec.VolumeData.Index == nil {
		return nil, nil
	}
	img, err := ckptimage.FromBlobs(rec.VolumeData.Index, rec.VolumeData.Manifest, rec.VolumeData.Config,
		rec.VolumeData.ArchivePath)
	if err != nil {
		return nil, fmt.Errorf("volume data image: %w", err)
	}
	return img, nil
}

// serveVolumeData returns the status of the volume data image. In
// transfer mode Registry it pushes the image first; in mode Direct the
// offer carries it, and the status names the reference the target gives
// it.
func (a *Agent) serveVolumeData(ctx context.Context, pm *lpmv1.PodMigration, rec *state.Record) (
	*lpmv1.VolumeDataStatus, lpmv1.Reason, error) {
	img, err := volumeImage(rec)
	if err != nil || img == nil {
		return nil, lpmv1.ReasonImageBuildFailed, err
	}
	var manifest v1.Manifest
	if err := json.Unmarshal(img.Manifest, &manifest); err != nil {
		return nil, lpmv1.ReasonImageBuildFailed, fmt.Errorf("invalid volume data manifest: %w", err)
	}
	dataBytes, _ := strconv.ParseInt(manifest.Annotations[volumeimage.AnnotationDataBytes], 10, 64)
	status := &lpmv1.VolumeDataStatus{ImageDigest: img.Digest().String(), ImageBytes: img.TotalBytes(),
		DataBytes: dataBytes, Volumes: strings.Split(manifest.Annotations[volumeimage.AnnotationVolumes], ",")}

	if transferMode(pm) == lpmv1.TransferModeDirect {
		status.Image = ckptimage.DirectReference(pm.Namespace, pm.Spec.PodName, volumedata.ContainerName,
			string(pm.UID))
		return status, "", nil
	}
	auth, err := a.registryAuth(ctx, pm)
	if err != nil {
		return nil, lpmv1.ReasonTransferFailed, err
	}
	ref := ckptimage.RegistryReference(pm.Spec.Transfer.Registry.Repository, pm.Spec.PodName,
		volumedata.ContainerName, string(pm.UID))
	digestRef, err := a.pusher.Push(ctx, img, ref, auth)
	if err != nil {
		return nil, lpmv1.ReasonTransferFailed, fmt.Errorf("failed to push the volume data image: %w", err)
	}
	rec.VolumeData.Image, rec.VolumeData.Pushed = digestRef, true
	if err := a.store.Save(rec); err != nil {
		return nil, lpmv1.ReasonInternalError, err
	}
	status.Image = digestRef
	return status, "", nil
}

// removeVolumeLayer deletes the record's volume data layer file.
func (a *Agent) removeVolumeLayer(ctx context.Context, rec *state.Record) {
	if rec.VolumeData == nil || rec.VolumeData.ArchivePath == "" {
		return
	}
	if err := os.Remove(rec.VolumeData.ArchivePath); err != nil && !errors.Is(err, os.ErrNotExist) {
		logf.FromContext(ctx).Error(err, "Failed to delete the volume data layer", "path",
			rec.VolumeData.ArchivePath)
	}
}

// deletePushedVolumeData deletes the pushed volume data image, where the
// registry allows deletes.
func (a *Agent) deletePushedVolumeData(ctx context.Context, auth *transfer.RegistryAuth, rec *state.Record) {
	if rec.VolumeData == nil || !rec.VolumeData.Pushed || a.pusher == nil {
		return
	}
	if err := a.pusher.Delete(ctx, rec.VolumeData.Image, auth); err != nil {
		logf.FromContext(ctx).V(2).Info("Registry kept the pushed image", "image", rec.VolumeData.Image,
			"error", err.Error())
	}
}

// importVolumeData fetches and imports the volume data image the source
// reported, like a checkpoint image, and returns the reference the
// restored pod's init container runs, or "" when there is none.
func (a *Agent) importVolumeData(ctx context.Context, pm *lpmv1.PodMigration, rec *state.Record,
	progress func(int64)) (string, lpmv1.Reason, error) {
	vd := pm.Status.Source.VolumeData
	if vd == nil || vd.ImageDigest == "" {
		return "", "", nil
	}
	ref, reason, err := a.importOne(ctx, pm, rec, lpmv1.SourceContainerStatus{Name: volumedata.ContainerName,
		Image: vd.Image, ImageDigest: vd.ImageDigest, ImageBytes: vd.ImageBytes}, progress)
	if err != nil {
		return "", reason, fmt.Errorf("volume data image: %w", err)
	}
	if err := a.runtimeWaitCRI(ctx, ref); err != nil {
		return "", lpmv1.ReasonImportFailed, err
	}
	return ref, "", nil
}

// collectVolumeLayers deletes volume data layers of migrations the agent
// has no record of, left by an agent that stopped between writing the
// file and its record.
func (a *Agent) collectVolumeLayers(ctx context.Context, known map[string]bool) {
	dir := filepath.Dir(a.volumeLayerPath("x"))
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		uid, ok := strings.CutSuffix(e.Name(), ".tar")
		if !ok || known[uid] {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			logf.FromContext(ctx).Error(err, "Failed to delete a volume data layer", "file", e.Name())
		}
	}
}
