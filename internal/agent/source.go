package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/agent/archive"
	"github.com/lpm-dev/lpm/internal/agent/ckptimage"
	"github.com/lpm-dev/lpm/internal/agent/kubelet"
	"github.com/lpm-dev/lpm/internal/agent/runtime"
	"github.com/lpm-dev/lpm/internal/agent/state"
	"github.com/lpm-dev/lpm/internal/agent/transfer"
	"github.com/lpm-dev/lpm/internal/volumedata"
)

// pollInterval is how often the agent looks again at something it cannot
// watch: a pod on another node, a deadline.
const pollInterval = 2 * time.Second

// reconcileSource does the source node's part of the phase the migration
// is in (docs/design.md, steps 2, 5, 7 and 13, and the rollback).
func (a *Agent) reconcileSource(ctx context.Context, pm *lpmv1.PodMigration, rec *state.Record) (reconcile.Result,
	error) {
	key := taskKey(string(pm.UID), state.RoleSource)
	restored := meta(pm.Status.Conditions, lpmv1.ConditionRestored)
	// Remember the restored pod: if the migration vanishes while the agent
	// is down, a running restored pod means the frozen source must die.
	if rec != nil && pm.Status.RestoredPod != "" && rec.RestoredPod != pm.Status.RestoredPod {
		rec.RestoredPod = pm.Status.RestoredPod
		if err := a.store.Save(rec); err != nil {
			return reconcile.Result{}, err
		}
	}
	switch {
	// After verification the migration only finishes, even when deleted.
	// Only the controller's Restored condition lets the agent kill the
	// frozen source. Phase Succeeded without it is a dry run, which froze
	// nothing.
	case isTrue(restored) &&
		(pm.Status.Phase == lpmv1.PhaseSucceeded || pm.Spec.SourcePolicy != lpmv1.SourcePolicyKeep):
		a.tasks.stop(key)
		return a.sourceFinish(ctx, pm, rec)
	case pm.DeletionTimestamp != nil || pm.Status.Phase == lpmv1.PhaseFailed:
		a.tasks.stop(key)
		return a.sourceRollback(ctx, pm, rec)
	case pm.Status.Phase == lpmv1.PhasePending || pm.Status.Phase == "":
		if isTrue(sourceCondition(pm, lpmv1.AgentConditionPrepared)) || pm.Status.SourceNode == "" {
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, a.sourcePrepare(ctx, pm)
	}

	// Checkpointing and later: the checkpoint task does steps 5 and 7.
	if rec == nil || !rec.CheckpointDone {
		if a.tasks.running(key) {
			return reconcile.Result{}, nil
		}
		if rec != nil && (rec.CheckpointStarted != nil || rec.Failed) {
			return reconcile.Result{}, a.abandonCheckpoint(ctx, pm, rec)
		}
		if pm.Status.Phase != lpmv1.PhaseCheckpointing {
			return reconcile.Result{}, nil
		}
		a.tasks.run(key, func(ctx context.Context) { a.checkpointTask(ctx, pm.DeepCopy()) })
		return reconcile.Result{}, nil
	}
	if !isTrue(sourceCondition(pm, lpmv1.AgentConditionImagesServed)) &&
		!isFalse(sourceCondition(pm, lpmv1.AgentConditionImagesServed)) {
		a.tasks.run(key, func(ctx context.Context) { a.serveTask(ctx, pm.DeepCopy(), rec) })
		return reconcile.Result{}, nil
	}
	if err := a.offer(pm, rec); err != nil {
		return reconcile.Result{}, err
	}
	return a.guardFreeze(ctx, pm, rec)
}

func meta(conditions []metav1.Condition, condType string) *metav1.Condition {
	for i := range conditions {
		if conditions[i].Type == condType {
			return &conditions[i]
		}
	}
	return nil
}

// sourcePrepare checks that the pod can be checkpointed here (step 2).
func (a *Agent) sourcePrepare(ctx context.Context, pm *lpmv1.PodMigration) error {
	pod, containers, reason, err := a.sourcePod(ctx, pm)
	if err == nil {
		reason, err = a.checkCheckpointable(ctx, pod, containers)
	}
	if err == nil {
		reason, err = a.checkReadOnlyRoot(ctx, pod, containers)
	}
	if err == nil {
		reason, err = a.scanProcesses(ctx, pod, containers)
	}
	var volumes string
	if err == nil {
		volumes, reason, err = a.volumeCheck(ctx, pod)
	}
	if err != nil {
		return a.failSource(ctx, pm, lpmv1.AgentConditionPrepared, reason, err)
	}
	msg := fmt.Sprintf("%s of pod %s can be checkpointed on node %s", counted(len(containers), "container"),
		pod.Name, a.opts.NodeName)
	if volumes != "" {
		msg += "; " + volumes
	}
	if left := a.sandboxShmFiles(ctx, pod, containers); left != "" {
		msg += "; " + left
	}
	if budget, limited := freezeBudget(pod, names(containers)); limited && pm.Spec.SourcePolicy != lpmv1.SourcePolicyKeep {
		msg += fmt.Sprintf("; its liveness probes allow the frozen source %s", budget)
	}
	return a.patchSource(ctx, pm, func(s *lpmv1.SourceAgentStatus) {
		setCondition(&s.Conditions, a.condition(pm, lpmv1.AgentConditionPrepared, metav1.ConditionTrue,
			lpmv1.ReasonChecksPassed, msg))
	})
}

// podContainer is a container to checkpoint with its runtime ID.
type podContainer struct {
	name string
	id   string
}

func names(cs []podContainer) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.name)
	}
	return out
}

// sourcePod returns the pod being moved and its containers to checkpoint,
// in the order the kubelet starts them: native sidecars (init containers
// that restart), then the app containers.
func (a *Agent) sourcePod(ctx context.Context, pm *lpmv1.PodMigration) (*corev1.Pod, []podContainer, lpmv1.Reason,
	error) {
	pod := &corev1.Pod{}
	if err := a.client.Get(ctx, types.NamespacedName{Namespace: pm.Namespace, Name: pm.Spec.PodName}, pod); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil, lpmv1.ReasonPodGone, fmt.Errorf("pod %s/%s does not exist on node %s", pm.Namespace,
				pm.Spec.PodName, a.opts.NodeName)
		}
		return nil, nil, lpmv1.ReasonInternalError, err
	}
	if pm.Status.SourcePodUID != "" && string(pod.UID) != pm.Status.SourcePodUID {
		return nil, nil, lpmv1.ReasonSourceChanged, fmt.Errorf("pod %s was replaced by another pod of the same name",
			pod.Name)
	}
	if pod.Spec.NodeName != a.opts.NodeName {
		return nil, nil, lpmv1.ReasonPodGone, fmt.Errorf("pod %s runs on node %s, not %s", pod.Name,
			pod.Spec.NodeName, a.opts.NodeName)
	}
	statuses := map[string]corev1.ContainerStatus{}
	for _, s := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...),
		pod.Status.ContainerStatuses...) {
		statuses[s.Name] = s
	}
	var specs []corev1.Container
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			specs = append(specs, c)
		}
	}
	specs = append(specs, pod.Spec.Containers...)
	var containers []podContainer
	for _, c := range specs {
		s, ok := statuses[c.Name]
		if !ok || s.State.Running == nil || s.ContainerID == "" {
			return nil, nil, lpmv1.ReasonPodNotRunning, fmt.Errorf("container %s of pod %s is not running", c.Name,
				pod.Name)
		}
		containers = append(containers, podContainer{name: c.Name, id: runtime.ContainerID(s.ContainerID)})
	}
	return pod, containers, "", nil
}

// checkCheckpointable checks each container with the runtime: it must run,
// must not be frozen by someone else, and CRIU must be enabled.
func (a *Agent) checkCheckpointable(ctx context.Context, pod *corev1.Pod, containers []podContainer) (lpmv1.Reason,
	error) {
	if pod.Spec.ShareProcessNamespace != nil && *pod.Spec.ShareProcessNamespace {
		// The restored processes keep their PIDs, and in a PID namespace
		// shared with the new pod's other processes those can be taken:
		// CRIU then fails with "Can't fork for N: File exists".
		return lpmv1.ReasonUnsupportedProcessState, fmt.Errorf("pod %s shares one process namespace between "+
			"its containers; restored processes could not keep their PIDs", pod.Name)
	}
	info, err := a.runtime.Info(ctx)
	if err != nil {
		return lpmv1.ReasonAgentCannotCheckpoint, err
	}
	if !info.CRIUEnabled {
		return lpmv1.ReasonAgentCannotCheckpoint, errors.New("the runtime's enable_criu is false")
	}
	// CRIU runs with containerd's capabilities and needs CAP_SYS_RESOURCE to
	// dump a process of another user ("Can't get rlimit").
	runtimeStatus, err := readProcStatus(a.opts.ProcRoot, info.Pid)
	if err != nil {
		return lpmv1.ReasonAgentCannotCheckpoint, fmt.Errorf("failed to read containerd's process: %w", err)
	}
	canDumpNonRoot := runtimeStatus.CapEff&(1<<capSysResource) != 0
	for _, c := range containers {
		pid, err := a.runtime.TaskPID(ctx, c.id)
		if err != nil {
			return lpmv1.ReasonPodNotRunning, fmt.Errorf("container %s of pod %s: %w", c.name, pod.Name, err)
		}
		proc, err := readProcStatus(a.opts.ProcRoot, uint64(pid))
		if err != nil {
			return lpmv1.ReasonPodNotRunning, fmt.Errorf("container %s of pod %s: %w", c.name, pod.Name, err)
		}
		if proc.EffectiveUID != 0 && !canDumpNonRoot {
			return lpmv1.ReasonNonRootUnsupported, fmt.Errorf("container %s of pod %s runs as user %d, and "+
				"the runtime lacks CAP_SYS_RESOURCE, which CRIU needs to dump a process of another user",
				c.name, pod.Name, proc.EffectiveUID)
		}
	}
	for _, c := range containers {
		st, err := a.runtime.TaskStatus(ctx, c.id)
		if err != nil {
			return lpmv1.ReasonPodNotRunning, fmt.Errorf("container %s of pod %s: %w", c.name, pod.Name, err)
		}
		switch st {
		case runtime.TaskRunning:
		case runtime.TaskPaused:
			return lpmv1.ReasonContainerFrozen, fmt.Errorf("container %s of pod %s is already frozen; "+
				"CRIU can hang on a cgroup frozen by someone else", c.name, pod.Name)
		default:
			return lpmv1.ReasonPodNotRunning, fmt.Errorf("container %s of pod %s is %s", c.name, pod.Name, st)
		}
	}
	return "", nil
}

// checkpointTask cuts the pod (step 5) and builds and offers its images
// (step 7). Every container is paused first, so none runs on past
// another's checkpoint. The checkpoints follow one by one, each bounded by
// what is left of the migration's checkpoint timeout.
func (a *Agent) checkpointTask(ctx context.Context, pm *lpmv1.PodMigration) {
	log := logf.FromContext(ctx).WithValues("PodMigration", klog.KObj(pm),
		"pod", klog.KRef(pm.Namespace, pm.Spec.PodName), "role", "source")
	ctx = logf.IntoContext(ctx, log)
	rec, reason, err := a.checkpoint(ctx, pm)
	if err != nil {
		log.Error(err, "Checkpoint failed", "reason", reason)
		if rec != nil {
			a.thawAndDiscard(context.WithoutCancel(ctx), rec)
			rec.Failed = true
			if serr := a.store.Save(rec); serr != nil {
				log.Error(serr, "Failed to save state")
			}
		}
		fail := a.failSource
		if rec != nil {
			fail = a.failSourceThawed
		}
		if perr := fail(context.WithoutCancel(ctx), pm, lpmv1.AgentConditionCheckpointed, reason,
			err); perr != nil {
			log.Error(perr, "Failed to report the checkpoint failure")
		}
		return
	}
	log.Info("Checkpointed pod", "containers", len(rec.Containers), "frozen", len(rec.Paused) > 0)
	a.serveTask(ctx, pm, rec)
}

func (a *Agent) checkpoint(ctx context.Context, pm *lpmv1.PodMigration) (*state.Record, lpmv1.Reason, error) {
	pod, containers, reason, err := a.sourcePod(ctx, pm)
	if err != nil {
		return nil, reason, err
	}
	timeout := a.opts.DefaultCheckpointTimeout
	if pm.Spec.Timeouts != nil && pm.Spec.Timeouts.Checkpoint != nil {
		timeout = pm.Spec.Timeouts.Checkpoint.Duration
	}

	now := a.clock.Now()
	rec := &state.Record{UID: string(pm.UID), Namespace: pm.Namespace, Name: pm.Name, Role: state.RoleSource,
		CheckpointStarted: &now, CutTime: &now, PodName: pod.Name, PodUID: string(pod.UID)}
	if budget, limited := freezeBudget(pod, names(containers)); limited && pm.Spec.SourcePolicy != lpmv1.SourcePolicyKeep {
		deadline := now.Add(budget)
		rec.FreezeDeadline = &deadline
	}
	if err := a.store.Save(rec); err != nil {
		return nil, lpmv1.ReasonInternalError, err
	}
	ctx, cancel := context.WithDeadline(ctx, now.Add(timeout))
	defer cancel()

	// The cut: freeze every container before the first dump. CRIU dumps a
	// frozen container and leaves it frozen (runc 1.1 with CRIU 4).
	for _, c := range containers {
		rec.Paused = append(rec.Paused, c.id)
		if err := a.store.Save(rec); err != nil {
			return rec, lpmv1.ReasonInternalError, err
		}
		if err := a.runtime.Pause(ctx, c.id); err != nil {
			return rec, lpmv1.ReasonRuntimeCannotCheckpoint, fmt.Errorf("failed to freeze container %s: %w", c.name,
				err)
		}
	}
	// The emptyDir volumes are read while the kubelet dumps the frozen
	// containers, so they match the memory checkpoint.
	waitVolumes, err := a.startVolumePack(ctx, pm, pod, rec, containers)
	if err != nil {
		return rec, lpmv1.ReasonCheckpointFailed, err
	}

	followed := map[string]*archive.Info{}
	for _, c := range containers {
		remaining := now.Add(timeout).Sub(a.clock.Now())
		follower := followArchive(ctx, a.opts.LocalCheckpointsDir, pod.Name, pod.Namespace, c.name)
		nodePath, err := a.checkpointer.Checkpoint(ctx, pm.Namespace, pod.Name, c.name, remaining)
		if err != nil {
			follower.stop()
			reason := checkpointReason(ctx, err)
			switch reason {
			case lpmv1.ReasonCancelled:
				return rec, reason, fmt.Errorf("the checkpoint of container %s stopped because the migration "+
					"ended or was deleted: %w", c.name, err)
			case lpmv1.ReasonAgentRestarted:
				return rec, reason, fmt.Errorf("the checkpoint of container %s stopped because the agent of "+
					"node %s is stopping: %w", c.name, a.opts.NodeName, err)
			}
			dir, lines := a.keepRuntimeLog(ctx, string(pm.UID), c.name, "dump", err.Error())
			return rec, reason, withCRIUErrors(fmt.Errorf("failed to checkpoint container %s: %w",
				c.name, err), a.opts.NodeName, dir, lines)
		}
		local, err := a.localArchivePath(nodePath)
		if err != nil {
			follower.stop()
			return rec, lpmv1.ReasonCheckpointFailed, err
		}
		if info, ok := follower.finish(local); ok {
			followed[local] = info
		}
		// The archive holds the processes' memory: only root may read it,
		// whatever mode the runtime wrote it with.
		if err := os.Chmod(local, 0o600); err != nil {
			return rec, lpmv1.ReasonCheckpointFailed, fmt.Errorf("failed to restrict checkpoint archive %s: %w",
				local, err)
		}
		if _, err := a.keepArchiveLog(string(pm.UID), c.name, local); err != nil {
			logf.FromContext(ctx).Info("Kept no CRIU dump log", "container", c.name, "error", err.Error())
		}
		rec.Containers = append(rec.Containers, state.Container{Name: c.name, ContainerID: c.id, ArchivePath: local})
		if err := a.store.Save(rec); err != nil {
			return rec, lpmv1.ReasonInternalError, err
		}
	}

	if reason, err := waitVolumes(); err != nil {
		return rec, reason, err
	}

	// sourcePolicy Keep clones the pod: the source runs on.
	if pm.Spec.SourcePolicy == lpmv1.SourcePolicyKeep {
		for _, id := range rec.Paused {
			if err := a.runtime.Resume(ctx, id); err != nil {
				return rec, lpmv1.ReasonInternalError, fmt.Errorf("failed to thaw container %s: %w", id, err)
			}
		}
		rec.Paused = nil
	}

	stats, reason, err := a.buildImages(pm, pod, rec, followed)
	if err != nil {
		return rec, reason, err
	}
	a.recordBaseImageIDs(ctx, stats)
	rec.CheckpointDone = true
	if err := a.store.Save(rec); err != nil {
		return rec, lpmv1.ReasonInternalError, err
	}
	cut := metav1.NewMicroTime(*rec.CutTime)
	err = a.patchSource(ctx, pm, func(s *lpmv1.SourceAgentStatus) {
		s.CutTime = &cut
		s.LogPath = a.logDir(string(pm.UID))
		s.Frozen = len(rec.Paused) > 0
		s.Containers = stats
		setCondition(&s.Conditions, a.condition(pm, lpmv1.AgentConditionCheckpointed, metav1.ConditionTrue,
			lpmv1.ReasonCheckpointed, counted(len(stats), "container")+" checkpointed"))
	})
	if err != nil {
		return rec, lpmv1.ReasonInternalError, err
	}
	recordCheckpoint(stats, a.clock.Since(now))
	return rec, "", nil
}

func checkpointReason(ctx context.Context, err error) lpmv1.Reason {
	// A stopped task ends the kubelet's request, and the error then reports
	// only that the kubelet did not respond in time.
	if errors.Is(ctx.Err(), context.Canceled) {
		if errors.Is(context.Cause(ctx), errTaskStopped) {
			return lpmv1.ReasonCancelled
		}
		return lpmv1.ReasonAgentRestarted
	}
	var kerr *kubelet.Error
	if errors.As(err, &kerr) {
		return kerr.Reason
	}
	if ctx.Err() != nil {
		return lpmv1.ReasonCheckpointTimedOut
	}
	return lpmv1.ReasonCheckpointFailed
}

// localArchivePath maps the archive path the kubelet returned to the
// agent's mount of the checkpoint directory. It rejects any other path, so
// a kubelet response never makes the agent read or delete another file.
func (a *Agent) localArchivePath(nodePath string) (string, error) {
	dir, base := filepath.Split(nodePath)
	if filepath.Clean(dir) != filepath.Clean(a.opts.CheckpointsDir) || !strings.HasPrefix(base, "checkpoint-") ||
		!strings.HasSuffix(base, ".tar") {
		return "", fmt.Errorf("kubelet returned archive %q outside its checkpoint directory %s", nodePath,
			a.opts.CheckpointsDir)
	}
	return filepath.Join(a.opts.LocalCheckpointsDir, base), nil
}

// buildImages validates each archive in one hashing pass and builds its
// checkpoint image, keeping the image's small blobs in the record. An
// archive in followed was inspected while the runtime wrote it.
func (a *Agent) buildImages(pm *lpmv1.PodMigration, pod *corev1.Pod, rec *state.Record,
	followed map[string]*archive.Info) ([]lpmv1.SourceContainerStatus, lpmv1.Reason, error) {
	var out []lpmv1.SourceContainerStatus
	for i := range rec.Containers {
		c := &rec.Containers[i]
		info := followed[c.ArchivePath]
		var err error
		if info == nil {
			info, err = inspectFile(c.ArchivePath)
		}
		if err != nil {
			var archiveErr *archive.Error
			if errors.As(err, &archiveErr) {
				return nil, lpmv1.ReasonArchiveInvalid, fmt.Errorf("archive of container %s: %w", c.Name, err)
			}
			return nil, lpmv1.ReasonCheckpointFailed, err
		}
		if err := checkArchiveOwner(info, pod, c.Name); err != nil {
			return nil, lpmv1.ReasonArchiveInvalid, fmt.Errorf("archive of container %s: %w", c.Name, err)
		}
		img, err := ckptimage.Build(ckptimage.Source{ArchivePath: c.ArchivePath, Archive: info, Container: c.Name,
			Pod: pod.Name, Namespace: pod.Namespace, PodUID: string(pod.UID), MigrationUID: string(pm.UID),
			Platform: v1.Platform{OS: a.opts.Platform.OS, Architecture: a.opts.Platform.Architecture,
				Variant: a.opts.Platform.Variant}})
		if err != nil {
			return nil, lpmv1.ReasonImageBuildFailed, err
		}
		c.ArchiveBytes = info.Size
		c.Index, c.Manifest, c.Config = img.Index, img.Manifest, img.Config
		status := lpmv1.SourceContainerStatus{Name: c.Name, ArchiveBytes: info.Size,
			BaseImage: firstNonEmpty(info.Config.RootfsImageRef, info.Config.RootfsImageName)}
		if info.Stats != nil {
			status.FreezingTime = &metav1.Duration{Duration: info.Stats.FreezingTime}
			status.FrozenTime = &metav1.Duration{Duration: info.Stats.FrozenTime}
			status.PagesWritten = info.Stats.PagesWritten
		}
		out = append(out, status)
	}
	return out, "", nil
}

// checkArchiveOwner checks that an archive contains the checkpoint of the
// named container of this pod, by the name the runtime recorded in
// config.dump. It ignores the OCI spec's container-name annotation, because
// containerd 2.3.7 writes "containerd" there for a restored container.
func checkArchiveOwner(info *archive.Info, pod *corev1.Pod, container string) error {
	got, err := archive.ParseContainerName(info.Config.Name)
	if err != nil {
		return err
	}
	want := archive.ContainerName{Container: container, Pod: pod.Name, Namespace: pod.Namespace,
		PodUID: string(pod.UID), Attempt: got.Attempt}
	if got != want {
		return &archive.Error{Entry: "config.dump",
			Reason: fmt.Sprintf("names container %s, want %s", got, want)}
	}
	return nil
}

func inspectFile(path string) (*archive.Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("failed to open checkpoint archive: %w", err)
	}
	defer func() { _ = f.Close() }()
	return archive.Inspect(f, archive.Limits{})
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// serveTask offers the images to the target agent (transfer Direct) or
// pushes them (transfer Registry), then writes ImagesServed (step 7).
func (a *Agent) serveTask(ctx context.Context, pm *lpmv1.PodMigration, rec *state.Record) {
	log := logf.FromContext(ctx)
	statuses, reason, err := a.serve(ctx, pm, rec)
	var volumeData *lpmv1.VolumeDataStatus
	if err == nil {
		volumeData, reason, err = a.serveVolumeData(ctx, pm, rec)
	}
	if err == nil {
		err = a.patchSource(ctx, pm, func(s *lpmv1.SourceAgentStatus) {
			mergeImageStatuses(s, statuses)
			s.VolumeData = volumeData
			if transferMode(pm) == lpmv1.TransferModeDirect {
				s.Endpoint = a.opts.TransferEndpoint
			}
			setCondition(&s.Conditions, a.condition(pm, lpmv1.AgentConditionImagesServed, metav1.ConditionTrue,
				lpmv1.ReasonImagesReady, counted(len(statuses), "checkpoint image")+" served"))
		})
		if err == nil {
			return
		}
		reason = lpmv1.ReasonInternalError
	}
	log.Error(err, "Serving the checkpoint images failed", "reason", reason)
	if perr := a.failSource(context.WithoutCancel(ctx), pm, lpmv1.AgentConditionImagesServed, reason, err); perr != nil {
		log.Error(perr, "Failed to report the image failure")
	}
}

func mergeImageStatuses(s *lpmv1.SourceAgentStatus, images []lpmv1.SourceContainerStatus) {
	for _, img := range images {
		found := false
		for i := range s.Containers {
			if s.Containers[i].Name == img.Name {
				s.Containers[i].Image, s.Containers[i].ImageDigest = img.Image, img.ImageDigest
				s.Containers[i].ImageBytes = img.ImageBytes
				found = true
			}
		}
		if !found {
			s.Containers = append(s.Containers, img)
		}
	}
}

func transferMode(pm *lpmv1.PodMigration) lpmv1.TransferMode {
	if pm.Spec.Transfer != nil && pm.Spec.Transfer.Mode == lpmv1.TransferModeRegistry {
		return lpmv1.TransferModeRegistry
	}
	return lpmv1.TransferModeDirect
}

func (a *Agent) serve(ctx context.Context, pm *lpmv1.PodMigration, rec *state.Record) (
	[]lpmv1.SourceContainerStatus, lpmv1.Reason, error) {
	images, err := recordImages(rec)
	if err != nil {
		return nil, lpmv1.ReasonImageBuildFailed, err
	}
	var out []lpmv1.SourceContainerStatus
	if transferMode(pm) == lpmv1.TransferModeDirect {
		if err := a.offer(pm, rec); err != nil {
			return nil, lpmv1.ReasonInternalError, err
		}
		for _, c := range rec.Containers {
			img := images[c.Name]
			out = append(out, lpmv1.SourceContainerStatus{Name: c.Name,
				Image:       ckptimage.DirectReference(pm.Namespace, pm.Spec.PodName, c.Name, string(pm.UID)),
				ImageDigest: img.Digest().String(), ImageBytes: img.TotalBytes()})
		}
		return out, "", nil
	}

	auth, err := a.registryAuth(ctx, pm)
	if err != nil {
		return nil, lpmv1.ReasonTransferFailed, err
	}
	for i := range rec.Containers {
		c := &rec.Containers[i]
		img := images[c.Name]
		ref := ckptimage.RegistryReference(pm.Spec.Transfer.Registry.Repository, pm.Spec.PodName, c.Name,
			string(pm.UID))
		digestRef, err := a.pusher.Push(ctx, img, ref, auth)
		if err != nil {
			return nil, lpmv1.ReasonTransferFailed, err
		}
		c.Image, c.Pushed = digestRef, true
		if err := a.store.Save(rec); err != nil {
			return nil, lpmv1.ReasonInternalError, err
		}
		out = append(out, lpmv1.SourceContainerStatus{Name: c.Name, Image: digestRef,
			ImageDigest: img.Digest().String(), ImageBytes: img.TotalBytes()})
	}
	return out, "", nil
}

func recordImages(rec *state.Record) (map[string]*ckptimage.Image, error) {
	images := map[string]*ckptimage.Image{}
	for _, c := range rec.Containers {
		img, err := ckptimage.FromBlobs(c.Index, c.Manifest, c.Config, c.ArchivePath)
		if err != nil {
			return nil, fmt.Errorf("image of container %s: %w", c.Name, err)
		}
		images[c.Name] = img
	}
	img, err := volumeImage(rec)
	if err != nil {
		return nil, err
	}
	if img != nil {
		images[volumedata.ContainerName] = img
	}
	return images, nil
}

// offer registers (again, after a restart) the images with the transfer
// server for the migration's target node.
func (a *Agent) offer(pm *lpmv1.PodMigration, rec *state.Record) error {
	if transferMode(pm) != lpmv1.TransferModeDirect || rec == nil || !rec.CheckpointDone {
		return nil
	}
	images, err := recordImages(rec)
	if err != nil {
		return err
	}
	a.offers.Set(string(pm.UID), &transfer.Offer{TargetNode: pm.Status.TargetNode, Images: images})
	return nil
}

// registryAuth reads the pull secret the PodMigration names, from its
// namespace, for the repository's registry.
func (a *Agent) registryAuth(ctx context.Context, pm *lpmv1.PodMigration) (*transfer.RegistryAuth, error) {
	reg := pm.Spec.Transfer.Registry
	if reg == nil {
		return nil, errors.New("transfer mode Registry without a registry")
	}
	if reg.PullSecretName == "" {
		return nil, nil
	}
	repo, err := name.NewRepository(reg.Repository)
	if err != nil {
		return nil, fmt.Errorf("invalid repository %q: %w", reg.Repository, err)
	}
	secret := &corev1.Secret{}
	key := types.NamespacedName{Namespace: pm.Namespace, Name: reg.PullSecretName}
	if err := a.reader.Get(ctx, key, secret); err != nil {
		return nil, fmt.Errorf("failed to read pull secret %s: %w", key, err)
	}
	if secret.Type != corev1.SecretTypeDockerConfigJson {
		return nil, fmt.Errorf("pull secret %s has type %s, want %s", key, secret.Type, corev1.SecretTypeDockerConfigJson)
	}
	return transfer.ParseDockerConfig(secret.Data[corev1.DockerConfigJsonKey], repo.RegistryStr())
}

// guardFreeze fails the migration in time when the source's liveness
// probes would make the kubelet kill a frozen container, so the rollback
// still finds the source intact. The source agent thaws only after the
// controller has failed the migration and the restored pod is gone.
func (a *Agent) guardFreeze(ctx context.Context, pm *lpmv1.PodMigration, rec *state.Record) (reconcile.Result, error) {
	if rec.FreezeDeadline == nil || len(rec.Paused) == 0 {
		return reconcile.Result{}, nil
	}
	budget := rec.FreezeDeadline.Sub(*rec.CutTime)
	failAt := rec.FreezeDeadline.Add(-freezeMargin(budget))
	now := a.clock.Now()
	if now.Before(failAt) {
		return reconcile.Result{RequeueAfter: failAt.Sub(now)}, nil
	}
	if c := sourceCondition(pm, lpmv1.AgentConditionImagesServed); isFalse(c) &&
		c.Reason == string(lpmv1.ReasonLivenessProbeDeadline) {
		return reconcile.Result{}, nil
	}
	logf.FromContext(ctx).Info("Failing the migration before the kubelet kills the frozen source",
		"deadline", rec.FreezeDeadline)
	err := fmt.Errorf("the liveness probes of pod %s allow its frozen containers %s; the kubelet may kill them "+
		"at %s, so the migration stops and the source is thawed; relax the probes or migrate a smaller pod",
		pm.Spec.PodName, budget, rec.FreezeDeadline.UTC().Format(time.RFC3339))
	return reconcile.Result{}, a.failSource(ctx, pm, lpmv1.AgentConditionImagesServed,
		lpmv1.ReasonLivenessProbeDeadline, err)
}

// abandonCheckpoint handles a checkpoint the agent did not finish (it
// restarted, or the task failed): it is never resumed.
func (a *Agent) abandonCheckpoint(ctx context.Context, pm *lpmv1.PodMigration, rec *state.Record) error {
	if c := sourceCondition(pm, lpmv1.AgentConditionCheckpointed); isFalse(c) {
		return nil
	}
	a.thawAndDiscard(ctx, rec)
	rec.Failed = true
	if err := a.store.Save(rec); err != nil {
		return err
	}
	return a.failSourceThawed(ctx, pm, lpmv1.AgentConditionCheckpointed, lpmv1.ReasonAgentRestarted,
		fmt.Errorf("the agent of node %s restarted during the checkpoint, which it never resumes; it thawed "+
			"the source and deleted the archives", a.opts.NodeName))
}

// thawAndDiscard thaws what the record paused and deletes its archives.
func (a *Agent) thawAndDiscard(ctx context.Context, rec *state.Record) {
	log := logf.FromContext(ctx)
	for _, id := range rec.Paused {
		if err := a.runtime.Resume(ctx, id); err != nil && !errors.Is(err, runtime.ErrNotFound) {
			log.Error(err, "Failed to thaw container", "containerID", id)
		}
	}
	rec.Paused = nil
	a.removeArchives(ctx, rec)
}

func (a *Agent) removeArchives(ctx context.Context, rec *state.Record) {
	for _, c := range rec.Containers {
		if c.ArchivePath == "" {
			continue
		}
		if err := os.Remove(c.ArchivePath); err != nil && !errors.Is(err, os.ErrNotExist) {
			logf.FromContext(ctx).Error(err, "Failed to delete checkpoint archive", "path", c.ArchivePath)
		}
	}
	a.removeVolumeLayer(ctx, rec)
	a.removeStrayArchives(ctx, rec)
}

// removeStrayArchives deletes archives that the kubelet wrote for this pod
// after the checkpoint started and that the record does not name, because
// the agent stopped between the kubelet's response and its own record.
func (a *Agent) removeStrayArchives(ctx context.Context, rec *state.Record) {
	if rec.CheckpointStarted == nil {
		return
	}
	pm := &lpmv1.PodMigration{}
	if err := a.client.Get(ctx, types.NamespacedName{Namespace: rec.Namespace, Name: rec.Name}, pm); err != nil {
		return
	}
	pattern := filepath.Join(a.opts.LocalCheckpointsDir, "checkpoint-"+pm.Spec.PodName+"_"+pm.Namespace+"-*.tar")
	matches, _ := filepath.Glob(pattern)
	for _, m := range matches {
		info, err := os.Stat(m)
		if err == nil && !info.ModTime().Before(rec.CheckpointStarted.Add(-time.Second)) {
			_ = os.Remove(m)
		}
	}
}

// sourceFinish ends the source's part after the restored pod was verified
// (steps 13 and 14). With sourcePolicy Delete no code of the source may run
// again, and the kubelet must not restart it: the agent sends SIGKILL to
// the frozen containers, which stay frozen with the signal pending, and
// reports Killed. The controller then deletes the source pod. Once the pod
// is terminating, the agent thaws the containers, which die at once, and
// the kubelet does not restart a container of a terminating pod. Archives
// and images go last.
func (a *Agent) sourceFinish(ctx context.Context, pm *lpmv1.PodMigration, rec *state.Record) (reconcile.Result,
	error) {
	if isTrue(sourceCondition(pm, lpmv1.AgentConditionCleanedUp)) && (rec == nil || rec.Finished) {
		return reconcile.Result{}, nil
	}
	if rec != nil && len(rec.Paused) > 0 {
		if err := a.killFrozen(ctx, rec); err != nil {
			return reconcile.Result{}, err
		}
		if !isTrue(sourceCondition(pm, lpmv1.AgentConditionKilled)) {
			err := a.patchSource(ctx, pm, func(s *lpmv1.SourceAgentStatus) {
				setCondition(&s.Conditions, a.condition(pm, lpmv1.AgentConditionKilled, metav1.ConditionTrue,
					lpmv1.ReasonSourceKilled, fmt.Sprintf("every process of the %s has SIGKILL pending and dies "+
						"when the source pod is deleted", counted(len(rec.Paused), "frozen container"))))
			})
			if err != nil {
				return reconcile.Result{}, err
			}
		}
		terminating, err := a.sourcePodTerminating(ctx, rec)
		if err != nil || !terminating {
			return reconcile.Result{RequeueAfter: pollInterval}, err
		}
		if err := a.thawKilled(ctx, rec); err != nil {
			return reconcile.Result{}, err
		}
	}
	if rec != nil {
		a.finishRecord(ctx, pm, rec)
		a.removeLogs(ctx, rec.UID)
	}
	return reconcile.Result{}, a.patchSource(ctx, pm, func(s *lpmv1.SourceAgentStatus) {
		s.Frozen = false
		if pm.Spec.SourcePolicy != lpmv1.SourcePolicyKeep && meta(s.Conditions, lpmv1.AgentConditionKilled) == nil {
			setCondition(&s.Conditions, a.condition(pm, lpmv1.AgentConditionKilled, metav1.ConditionTrue,
				lpmv1.ReasonSourceKilled, "the agent holds no frozen container of the source"))
		}
		setCondition(&s.Conditions, a.condition(pm, lpmv1.AgentConditionCleanedUp, metav1.ConditionTrue,
			lpmv1.ReasonCleanedUp, "the source containers were stopped and the checkpoint archives deleted"))
	})
}

// killFrozen sends SIGKILL to every process of the record's paused
// containers, once, and records that it did.
func (a *Agent) killFrozen(ctx context.Context, rec *state.Record) error {
	if rec.Killed {
		return nil
	}
	for _, id := range rec.Paused {
		if err := a.runtime.KillFrozen(ctx, id); err != nil {
			return err
		}
	}
	rec.Killed = true
	return a.store.Save(rec)
}

// thawKilled thaws the killed containers of the record, whose processes
// die before they run, and forgets them once every thaw succeeded.
func (a *Agent) thawKilled(ctx context.Context, rec *state.Record) error {
	for _, id := range rec.Paused {
		if err := a.runtime.Resume(ctx, id); err != nil && !errors.Is(err, runtime.ErrNotFound) {
			return fmt.Errorf("failed to thaw killed container %s: %w", id, err)
		}
	}
	rec.Paused = nil
	return a.store.Save(rec)
}

// sourcePodTerminating reports whether the record's source pod is being
// deleted or is gone. A record without the pod's UID, written by an older
// agent, counts as terminating.
func (a *Agent) sourcePodTerminating(ctx context.Context, rec *state.Record) (bool, error) {
	if rec.PodUID == "" {
		return true, nil
	}
	pod := &corev1.Pod{}
	err := a.client.Get(ctx, types.NamespacedName{Namespace: rec.Namespace, Name: rec.PodName}, pod)
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("failed to get source pod %s/%s: %w", rec.Namespace, rec.PodName, err)
	}
	return string(pod.UID) != rec.PodUID || pod.DeletionTimestamp != nil, nil
}

// finishRecord withdraws the offer, deletes archives and pushed images, and
// marks the record finished.
func (a *Agent) finishRecord(ctx context.Context, pm *lpmv1.PodMigration, rec *state.Record) {
	a.offers.Remove(rec.UID)
	a.removeArchives(ctx, rec)
	if pm != nil && transferMode(pm) == lpmv1.TransferModeRegistry {
		auth, _ := a.registryAuth(ctx, pm)
		for _, c := range rec.Containers {
			if c.Pushed && a.pusher != nil {
				if err := a.pusher.Delete(ctx, c.Image, auth); err != nil {
					logf.FromContext(ctx).V(2).Info("Registry kept the pushed image", "image", c.Image,
						"error", err.Error())
				}
			}
		}
		a.deletePushedVolumeData(ctx, auth, rec)
	}
	rec.Finished = true
	if err := a.store.Save(rec); err != nil {
		logf.FromContext(ctx).Error(err, "Failed to save state")
	}
}

// sourceRollback undoes the source's part of a failed or cancelled
// migration: once the restored pod is gone, so that two copies never run,
// it thaws the source and deletes archives and images.
func (a *Agent) sourceRollback(ctx context.Context, pm *lpmv1.PodMigration, rec *state.Record) (reconcile.Result,
	error) {
	if isTrue(sourceCondition(pm, lpmv1.AgentConditionCleanedUp)) && (rec == nil || rec.Finished) {
		return reconcile.Result{}, nil
	}
	if rec != nil && len(rec.Paused) > 0 {
		exists, err := a.restoredPodExists(ctx, pm)
		if err != nil {
			return reconcile.Result{}, err
		}
		if exists {
			return reconcile.Result{RequeueAfter: pollInterval}, nil
		}
		a.thawAndDiscard(ctx, rec)
	}
	if rec != nil {
		a.finishRecord(ctx, pm, rec)
	}
	return reconcile.Result{}, a.patchSource(ctx, pm, func(s *lpmv1.SourceAgentStatus) {
		s.Frozen = false
		setCondition(&s.Conditions, a.condition(pm, lpmv1.AgentConditionCleanedUp, metav1.ConditionTrue,
			lpmv1.ReasonCleanedUp, "the source was thawed and the checkpoint archives deleted"))
	})
}

// restoredPodExists reads the restored pod from the API server (it runs on
// another node, outside the agent's cache).
func (a *Agent) restoredPodExists(ctx context.Context, pm *lpmv1.PodMigration) (bool, error) {
	if pm.Status.RestoredPod == "" {
		return false, nil
	}
	pod := &corev1.Pod{}
	err := a.reader.Get(ctx, types.NamespacedName{Namespace: pm.Namespace, Name: pm.Status.RestoredPod}, pod)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("failed to get restored pod %s: %w", pm.Status.RestoredPod, err)
	}
	if pod.Annotations[annotationMigrationUID] != "" && pod.Annotations[annotationMigrationUID] != string(pm.UID) {
		return false, nil
	}
	return pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed, nil
}

// counted returns n and the noun, in the plural unless n is 1.
func counted(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
