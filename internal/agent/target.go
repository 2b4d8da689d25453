package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/agent/ckptimage"
	"github.com/lpm-dev/lpm/internal/agent/runtime"
	"github.com/lpm-dev/lpm/internal/agent/state"
	"github.com/lpm-dev/lpm/internal/agent/transfer"
)

// importAttempts is how often the target agent tries to fetch an image
// whose transfer broke off; each retry resumes where the last one ended.
const importAttempts = 3

// reconcileTarget does the target node's part of the phase the migration
// is in (docs/design.md, steps 3, 8, 11 and 15, and the rollback).
func (a *Agent) reconcileTarget(ctx context.Context, pm *lpmv1.PodMigration, rec *state.Record) (reconcile.Result,
	error) {
	key := taskKey(string(pm.UID), state.RoleTarget)
	switch {
	case pm.DeletionTimestamp != nil || pm.Status.Phase == lpmv1.PhaseFailed:
		a.tasks.stop(key)
		return reconcile.Result{}, a.targetRollback(ctx, pm, rec)
	case pm.Status.Phase == lpmv1.PhaseSucceeded:
		if rec != nil && !rec.Finished {
			if err := a.resetCheckpointImages(ctx, pm); err != nil {
				return reconcile.Result{}, err
			}
		}
		return reconcile.Result{}, a.targetFinish(ctx, rec)
	case pm.Status.Phase == lpmv1.PhasePending || pm.Status.Phase == "":
		if isTrue(targetCondition(pm, lpmv1.AgentConditionPrepared)) || pm.Status.TargetNode == "" {
			return reconcile.Result{}, nil
		}
		// The cache may not show this agent's last Prepared yet. Another
		// pass would find the base images present and overwrite the
		// report of how they came here.
		if prepared, err := a.preparedNow(ctx, pm); err != nil || prepared {
			return reconcile.Result{}, err
		}
		return reconcile.Result{}, a.targetPrepare(ctx, pm)
	case pm.Status.RestoredPod != "" && isTrue(targetCondition(pm, lpmv1.AgentConditionImagesReady)):
		return a.targetVerify(ctx, pm, rec)
	case isTrue(sourceCondition(pm, lpmv1.AgentConditionImagesServed)) &&
		targetCondition(pm, lpmv1.AgentConditionImagesReady) == nil:
		a.tasks.run(key, func(ctx context.Context) { a.importTask(ctx, pm.DeepCopy()) })
	}
	return reconcile.Result{}, nil
}

// targetPrepare checks that this node restores from checkpoint images and
// holds each container's base image, pulling it or carrying it from the
// source node now when it is missing: a missing base image must fail the
// migration before the cut (step 3).
func (a *Agent) targetPrepare(ctx context.Context, pm *lpmv1.PodMigration) error {
	info, err := a.runtime.Info(ctx)
	if err != nil {
		return a.failTarget(ctx, pm, lpmv1.AgentConditionPrepared, lpmv1.ReasonAgentCannotRestore, err)
	}
	if problem := restoreProblem(info); problem != "" {
		return a.failTarget(ctx, pm, lpmv1.AgentConditionPrepared, lpmv1.ReasonAgentCannotRestore,
			errors.New(problem))
	}

	pod := &corev1.Pod{}
	if err := a.reader.Get(ctx, types.NamespacedName{Namespace: pm.Namespace, Name: pm.Spec.PodName}, pod); err != nil {
		if apierrors.IsNotFound(err) {
			return a.failTarget(ctx, pm, lpmv1.AgentConditionPrepared, lpmv1.ReasonPodGone, err)
		}
		return err
	}
	// Pulls and carries share the transfer timeout, which is also how long
	// the controller waits for Prepared.
	ctx, cancel := context.WithTimeout(ctx, a.transferTimeout(pm))
	defer cancel()
	var outcomes []baseImageOutcome
	var carriedBytes int64
	for _, s := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...),
		pod.Status.ContainerStatuses...) {
		if s.State.Running == nil {
			continue
		}
		out, err := a.ensureBaseImage(ctx, pm, s)
		if err != nil {
			return a.failTarget(context.WithoutCancel(ctx), pm, lpmv1.AgentConditionPrepared,
				lpmv1.ReasonBaseImageUnavailable, err)
		}
		outcomes = append(outcomes, out)
		if out.carried != nil {
			carriedBytes += out.carried.LayerBytes
		}
	}
	msg := fmt.Sprintf("node %s restores from checkpoint images and holds the base images", a.opts.NodeName)
	if how := baseImageMessage(outcomes, pm.Status.SourceNode); how != "" {
		msg += ": " + how
	}
	return a.patchTarget(context.WithoutCancel(ctx), pm, func(s *lpmv1.TargetAgentStatus) {
		s.BaseImageBytes = carriedBytes
		setCondition(&s.Conditions, a.condition(pm, lpmv1.AgentConditionPrepared, metav1.ConditionTrue,
			lpmv1.ReasonChecksPassed, msg))
	})
}

// preparedNow reads the PodMigration from the API server and reports
// whether this agent's Prepared condition is already True.
func (a *Agent) preparedNow(ctx context.Context, pm *lpmv1.PodMigration) (bool, error) {
	cur := &lpmv1.PodMigration{}
	if err := a.reader.Get(ctx, types.NamespacedName{Namespace: pm.Namespace, Name: pm.Name}, cur); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	return cur.UID == pm.UID && isTrue(targetCondition(cur, lpmv1.AgentConditionPrepared)), nil
}

// restoreProblem mirrors the capability check: containerd restores in
// CreateContainer only in 2.1 to 2.3, and 2.2 and 2.3 only when enabled.
func restoreProblem(info *runtime.Info) string {
	if info.Name != "containerd" {
		return fmt.Sprintf("runtime %s is not supported for restore", info.Name)
	}
	if !info.CRIUEnabled {
		return "the runtime's enable_criu is false"
	}
	v := strings.TrimPrefix(info.Version, "v")
	switch {
	case strings.HasPrefix(v, "2.1."):
	case strings.HasPrefix(v, "2.2."), strings.HasPrefix(v, "2.3."):
		if !info.RestoreViaCreate {
			return "containerd's enable_experimental_restore_via_create is false"
		}
	default:
		return fmt.Sprintf("containerd %s does not restore from checkpoint images (2.1 to 2.3 do)", info.Version)
	}
	return ""
}

// transferTimeout returns the migration's transfer timeout.
func (a *Agent) transferTimeout(pm *lpmv1.PodMigration) time.Duration {
	if pm.Spec.Timeouts != nil && pm.Spec.Timeouts.Transfer != nil {
		return pm.Spec.Timeouts.Transfer.Duration
	}
	return a.opts.DefaultTransferTimeout
}

// importTask fetches and imports every checkpoint image (step 8).
func (a *Agent) importTask(ctx context.Context, pm *lpmv1.PodMigration) {
	log := logf.FromContext(ctx).WithValues("PodMigration", klog.KObj(pm),
		"pod", klog.KRef(pm.Namespace, pm.Spec.PodName), "role", "target")
	ctx = logf.IntoContext(ctx, log)
	ctx, cancel := context.WithTimeout(ctx, a.transferTimeout(pm))
	defer cancel()

	start := a.clock.Now()
	images, volumeRef, reason, err := a.importImages(ctx, pm)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
			reason = lpmv1.ReasonTransferTimedOut
		}
		log.Error(err, "Import failed", "reason", reason)
		bg := context.WithoutCancel(ctx)
		if rec, lerr := a.store.Load(string(pm.UID), state.RoleTarget); lerr == nil && rec != nil {
			a.removeImported(bg, rec)
		}
		if perr := a.failTarget(bg, pm, lpmv1.AgentConditionImagesReady, reason, err); perr != nil {
			log.Error(perr, "Failed to report the import failure")
		}
		return
	}
	a.progress.forget(string(pm.UID))
	recordImport(pm, a.clock.Since(start))
	err = a.patchTarget(ctx, pm, func(s *lpmv1.TargetAgentStatus) {
		s.Containers = images
		s.VolumeDataImage = volumeRef
		s.BytesDone = s.BytesTotal
		setCondition(&s.Conditions, a.condition(pm, lpmv1.AgentConditionImagesReady, metav1.ConditionTrue,
			lpmv1.ReasonImagesReady, counted(len(images), "checkpoint image")+
				" imported and reported by the CRI"))
	})
	if err != nil {
		log.Error(err, "Failed to report the imported images")
	}
}

// importImages imports every checkpoint image and the volume data image,
// and returns the images and the volume data image's reference ("" when
// the migration carries none).
func (a *Agent) importImages(ctx context.Context, pm *lpmv1.PodMigration) ([]lpmv1.TargetContainerStatus,
	string, lpmv1.Reason, error) {
	if reason, err := a.checkBaseImages(ctx, pm); err != nil {
		return nil, "", reason, err
	}
	src := pm.Status.Source
	rec := &state.Record{UID: string(pm.UID), Namespace: pm.Namespace, Name: pm.Name, Role: state.RoleTarget}
	if err := a.store.Save(rec); err != nil {
		return nil, "", lpmv1.ReasonInternalError, err
	}
	var total int64
	for _, c := range src.Containers {
		total += c.ImageBytes
	}
	if src.VolumeData != nil {
		total += src.VolumeData.ImageBytes
	}
	var done int64
	var out []lpmv1.TargetContainerStatus
	for _, c := range src.Containers {
		if c.ImageDigest == "" {
			return nil, "", lpmv1.ReasonImportFailed, fmt.Errorf("source reported no image digest for container %s",
				c.Name)
		}
		ref, reason, err := a.importOne(ctx, pm, rec, c, func(n int64) {
			a.reportProgress(ctx, pm, done+n, total)
		})
		if err != nil {
			return nil, "", reason, err
		}
		done += c.ImageBytes
		if err := a.runtimeWaitCRI(ctx, ref); err != nil {
			return nil, "", lpmv1.ReasonImportFailed, err
		}
		out = append(out, lpmv1.TargetContainerStatus{Name: c.Name, Image: ref})
	}
	volumeRef, reason, err := a.importVolumeData(ctx, pm, rec, func(n int64) {
		a.reportProgress(ctx, pm, done+n, total)
	})
	if err != nil {
		return nil, "", reason, err
	}
	return out, volumeRef, "", nil
}

func (a *Agent) runtimeWaitCRI(ctx context.Context, ref string) error {
	waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	_, err := a.runtime.WaitForCRIImage(waitCtx, ref)
	return err
}

func (a *Agent) importOne(ctx context.Context, pm *lpmv1.PodMigration, rec *state.Record,
	c lpmv1.SourceContainerStatus, progress func(int64)) (string, lpmv1.Reason, error) {
	if transferMode(pm) == lpmv1.TransferModeRegistry {
		rec.Containers = append(rec.Containers, state.Container{Name: c.Name, Image: c.Image})
		if err := a.store.Save(rec); err != nil {
			return "", lpmv1.ReasonInternalError, err
		}
		auth, err := a.registryAuth(ctx, pm)
		if err != nil {
			return "", lpmv1.ReasonTransferFailed, err
		}
		if !strings.HasSuffix(c.Image, "@"+c.ImageDigest) {
			return "", lpmv1.ReasonDigestMismatch, fmt.Errorf("image %s of container %s is not the digest %s the "+
				"source reported", c.Image, c.Name, c.ImageDigest)
		}
		if _, err := a.runtime.PullImage(ctx, c.Image, auth.CRI()); err != nil {
			return "", lpmv1.ReasonTransferFailed, err
		}
		progress(c.ImageBytes)
		return c.Image, "", nil
	}

	pinned, err := a.publishedFingerprint(ctx, pm.Status.SourceNode)
	if err != nil {
		return "", lpmv1.ReasonTransferFailed, err
	}
	if pm.Status.Source.Endpoint == "" {
		return "", lpmv1.ReasonTransferFailed, errors.New("the source agent published no transfer endpoint")
	}
	indexDigest, err := digest.Parse(c.ImageDigest)
	if err != nil {
		return "", lpmv1.ReasonImportFailed, fmt.Errorf("invalid image digest %q of container %s: %w",
			c.ImageDigest, c.Name, err)
	}
	name := ckptimage.DirectReference(pm.Namespace, pm.Spec.PodName, c.Name, string(pm.UID))
	rec.Containers = append(rec.Containers, state.Container{Name: c.Name, Image: name})
	if err := a.store.Save(rec); err != nil {
		return "", lpmv1.ReasonInternalError, err
	}
	if err := a.waitOwnFingerprint(ctx); err != nil {
		return "", lpmv1.ReasonTransferFailed, err
	}
	source := a.fetcher.Source(pm.Status.Source.Endpoint, pinned, string(pm.UID), c.Name)
	req := runtime.ImportRequest{
		Name:         name,
		Index:        ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: indexDigest, Size: -1},
		Labels:       map[string]string{labelMigrationUID: string(pm.UID), labelMigration: pm.Namespace + "/" + pm.Name},
		Platform:     &a.opts.Platform,
		Snapshotter:  a.opts.Snapshotter,
		ProcRoot:     a.opts.ProcRoot,
		Progress:     func(done, _ int64) { progress(done) },
		IngestPrefix: ingestPrefix(string(pm.UID)),
	}
	var lastErr error
	for attempt := 1; attempt <= importAttempts; attempt++ {
		res, err := a.runtime.Import(ctx, req, source)
		if err == nil {
			if !res.IntoSnapshot {
				logf.FromContext(ctx).Info("Imported the checkpoint image through the content store, because "+
					"containerd's snapshot directory was not reachable", "container", c.Name, "image", name)
			}
			rec.Containers[len(rec.Containers)-1].Imported = true
			return name, "", a.store.Save(rec)
		}
		lastErr = err
		// Only a broken-off stream is worth resuming; altered content is not.
		if importReason(err) != lpmv1.ReasonTransferFailed || ctx.Err() != nil {
			break
		}
		logf.FromContext(ctx).Info("Transfer broke off; resuming", "container", c.Name, "attempt", attempt,
			"error", err.Error())
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(attempt) * time.Second):
		}
		// A source agent that replaced its certificate at a restart publishes
		// the new fingerprint, so the next attempt pins what it publishes now.
		if errors.Is(err, transfer.ErrPinMismatch) {
			if fresh, ferr := a.currentFingerprint(ctx, pm.Status.SourceNode); ferr == nil && fresh != pinned {
				pinned = fresh
				source = a.fetcher.Source(pm.Status.Source.Endpoint, pinned, string(pm.UID), c.Name)
			}
		}
	}
	if errors.Is(lastErr, transfer.ErrPinMismatch) {
		lastErr = fmt.Errorf("the agent at %s does not present the certificate that NodeAgent %s publishes, "+
			"also after reading it again; check that the lpm agent of node %s listens there: %w",
			pm.Status.Source.Endpoint, pm.Status.SourceNode, pm.Status.SourceNode, lastErr)
	}
	return "", importReason(lastErr), lastErr
}

func importReason(err error) lpmv1.Reason {
	var status *transfer.StatusError
	switch {
	case errors.Is(err, runtime.ErrDigestMismatch), errors.Is(err, transfer.ErrDigest),
		errors.Is(err, transfer.ErrTooLong):
		return lpmv1.ReasonDigestMismatch
	// A source that does not respond fails with an i/o timeout, which also
	// matches context.DeadlineExceeded: it is a transfer failure, and
	// importTask reports TransferTimedOut only when the transfer timeout
	// itself expired.
	case errors.As(err, &status), errors.Is(err, runtime.ErrSource), errors.Is(err, transfer.ErrPinMismatch),
		errors.Is(err, transfer.ErrTruncated):
		return lpmv1.ReasonTransferFailed
	case errors.Is(err, context.DeadlineExceeded):
		return lpmv1.ReasonTransferTimedOut
	}
	return lpmv1.ReasonImportFailed
}

// publishedFingerprint reads the certificate digest a node's agent
// publishes in its NodeAgent.
func (a *Agent) publishedFingerprint(ctx context.Context, node string) (string, error) {
	na := &lpmv1.NodeAgent{}
	if err := a.client.Get(ctx, types.NamespacedName{Name: node}, na); err != nil {
		return "", fmt.Errorf("failed to get NodeAgent %s: %w", node, err)
	}
	if na.Status.ServingCertificateSHA256 == "" {
		return "", fmt.Errorf("NodeAgent %s publishes no certificate", node)
	}
	return na.Status.ServingCertificateSHA256, nil
}

// waitOwnFingerprint waits until this node's NodeAgent publishes the
// certificate the agent presents. A source agent rejects a client
// certificate that differs from the published one, as it does right after
// this agent started with a new certificate and before the publisher wrote
// it.
func (a *Agent) waitOwnFingerprint(ctx context.Context) error {
	want := a.fetcher.Fingerprint()
	for {
		got, err := a.currentFingerprint(ctx, a.opts.NodeName)
		if err == nil && got == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("NodeAgent %s did not publish this agent's certificate %s before the transfer "+
				"timeout (last read %q, error %v): %w", a.opts.NodeName, want, got, err, ctx.Err())
		case <-a.clock.After(200 * time.Millisecond):
		}
	}
}

// currentFingerprint reads the fingerprint a node's NodeAgent publishes from
// the API server, which may be newer than the cache.
func (a *Agent) currentFingerprint(ctx context.Context, node string) (string, error) {
	na := &lpmv1.NodeAgent{}
	if err := a.reader.Get(ctx, types.NamespacedName{Name: node}, na); err != nil {
		return "", fmt.Errorf("failed to get NodeAgent %s: %w", node, err)
	}
	return na.Status.ServingCertificateSHA256, nil
}

func (a *Agent) reportProgress(ctx context.Context, pm *lpmv1.PodMigration, done, total int64) {
	if !a.progress.allow(string(pm.UID), a.clock.Now()) {
		return
	}
	err := a.patchTarget(ctx, pm, func(s *lpmv1.TargetAgentStatus) {
		s.BytesDone, s.BytesTotal = done, total
	})
	if err != nil {
		logf.FromContext(ctx).V(3).Info("Failed to report transfer progress", "error", err.Error())
	}
}

// targetVerify reports, for each container of the restored pod, whether
// the runtime restored it from its checkpoint (step 11), and when the pod
// became Ready.
func (a *Agent) targetVerify(ctx context.Context, pm *lpmv1.PodMigration, rec *state.Record) (reconcile.Result,
	error) {
	pod := &corev1.Pod{}
	err := a.client.Get(ctx, types.NamespacedName{Namespace: pm.Namespace, Name: pm.Status.RestoredPod}, pod)
	if apierrors.IsNotFound(err) {
		return reconcile.Result{RequeueAfter: pollInterval}, nil
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	if pod.Spec.NodeName != a.opts.NodeName {
		return reconcile.Result{}, nil
	}
	// The clock is read before the runtime calls below, which take time.
	readyTime := observedReadyTime(pod, pm.Status.Target.ReadyTime, a.clock.Now())
	if rec != nil && rec.RestoredPod != pod.Name {
		rec.RestoredPod = pod.Name
		if err := a.store.Save(rec); err != nil {
			return reconcile.Result{}, err
		}
	}

	statuses := map[string]corev1.ContainerStatus{}
	for _, s := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...),
		pod.Status.ContainerStatuses...) {
		statuses[s.Name] = s
	}
	containers := pm.Status.Target.DeepCopy().Containers
	all, notRestored := true, ""
	for i := range containers {
		s, ok := statuses[containers[i].Name]
		if !ok || s.ContainerID == "" || s.State.Running == nil {
			all = false
			continue
		}
		id := runtime.ContainerID(s.ContainerID)
		restored, err := a.runtime.ContainerRestored(ctx, id)
		if err != nil {
			return reconcile.Result{}, err
		}
		containers[i].ContainerID, containers[i].Restored = id, restored
		if !restored {
			notRestored = containers[i].Name
		}
	}
	if failed, err := a.restoreFailure(ctx, pm, statuses); failed {
		return reconcile.Result{}, err
	}
	if !all && notRestored == "" {
		err := a.patchTarget(ctx, pm, func(s *lpmv1.TargetAgentStatus) {
			s.Containers = containers
			s.ReadyTime = readyTime
		})
		return reconcile.Result{RequeueAfter: pollInterval}, err
	}
	if notRestored == "" && !isTrue(targetCondition(pm, lpmv1.AgentConditionRestored)) {
		if reason, err := a.proveRestore(ctx, containers); err != nil {
			return reconcile.Result{}, a.failTarget(ctx, pm, lpmv1.AgentConditionRestored, reason, err)
		}
	}
	return reconcile.Result{}, a.patchTarget(ctx, pm, func(s *lpmv1.TargetAgentStatus) {
		s.Containers = containers
		s.ReadyTime = readyTime
		if notRestored != "" {
			setCondition(&s.Conditions, a.condition(pm, lpmv1.AgentConditionRestored, metav1.ConditionFalse,
				lpmv1.ReasonNotRestored, fmt.Sprintf("the runtime started container %s of pod %s afresh instead "+
					"of restoring it", notRestored, pod.Name)))
			return
		}
		setCondition(&s.Conditions, a.condition(pm, lpmv1.AgentConditionRestored, metav1.ConditionTrue,
			lpmv1.ReasonVerified, fmt.Sprintf("the runtime restored every container of pod %s", pod.Name)))
	})
}

// observedReadyTime returns the time to report as the moment the restored
// pod became Ready: reported while it describes the pod's current Ready
// period or the pod is not Ready, otherwise now. The kubelet records the
// transition by this node's clock in whole seconds, so it happened within
// the second after the recorded time. An observation later than that (the
// agent restarted, or an event came late) is cut to the end of that second.
func observedReadyTime(pod *corev1.Pod, reported *metav1.MicroTime, now time.Time) *metav1.MicroTime {
	var ready *corev1.PodCondition
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == corev1.PodReady {
			ready = &pod.Status.Conditions[i]
		}
	}
	if ready == nil || ready.Status != corev1.ConditionTrue {
		return reported
	}
	transition := ready.LastTransitionTime.Time
	if reported != nil && !reported.Time.Before(transition) {
		return reported
	}
	if latest := transition.Add(time.Second); !transition.IsZero() && now.After(latest) {
		now = latest
	}
	return &metav1.MicroTime{Time: now}
}

// targetFinish keeps the imported images while the restored pod uses them
// and leaves their removal to the garbage collector (step 15).
func (a *Agent) targetFinish(ctx context.Context, rec *state.Record) error {
	if rec == nil || rec.Finished {
		return nil
	}
	rec.Finished = true
	return a.store.Save(rec)
}

// targetRollback removes what the target received and reports CleanedUp.
func (a *Agent) targetRollback(ctx context.Context, pm *lpmv1.PodMigration, rec *state.Record) error {
	if isTrue(targetCondition(pm, lpmv1.AgentConditionCleanedUp)) && (rec == nil || rec.Finished) {
		return nil
	}
	if rec != nil {
		if exists, err := a.podUsesImages(ctx, rec); err != nil || exists {
			// The controller deletes the restored pod first.
			return err
		}
		a.removeImported(ctx, rec)
		rec.Finished = true
		if err := a.store.Save(rec); err != nil {
			return err
		}
	}
	a.progress.forget(string(pm.UID))
	return a.patchTarget(ctx, pm, func(s *lpmv1.TargetAgentStatus) {
		setCondition(&s.Conditions, a.condition(pm, lpmv1.AgentConditionCleanedUp, metav1.ConditionTrue,
			lpmv1.ReasonCleanedUp, "the received checkpoint images were removed"))
	})
}

// removeImported removes the images a record names, and the content and
// extraction snapshots containerd still holds for interrupted transfers.
func (a *Agent) removeImported(ctx context.Context, rec *state.Record) {
	for _, c := range rec.Containers {
		if c.Image == "" {
			continue
		}
		if err := a.runtime.RemoveImage(ctx, c.Image); err != nil {
			logf.FromContext(ctx).Error(err, "Failed to remove checkpoint image", "image", c.Image)
		}
	}
	if err := a.runtime.AbortImports(ctx, a.opts.Snapshotter, ingestPrefix(rec.UID), nil); err != nil {
		logf.FromContext(ctx).Error(err, "Failed to abort interrupted transfers")
	}
}

// ingestPrefix starts the containerd ingest references of a migration's
// transfers, and the keys of its extraction snapshots after "extract-".
func ingestPrefix(uid string) string { return "lpm-" + uid + "-" }

// podUsesImages reports whether a pod on this node runs one of the images
// a record names.
func (a *Agent) podUsesImages(ctx context.Context, rec *state.Record) (bool, error) {
	used, err := a.imagesInUse(ctx)
	if err != nil {
		return false, err
	}
	for _, c := range rec.Containers {
		if used[c.Image] {
			return true, nil
		}
	}
	return false, nil
}

// imagesInUse returns the images of the pods on this node that have not
// terminated. A restored container reports its base image to the CRI, so
// the pods' specs are the only record of the checkpoint image they use.
func (a *Agent) imagesInUse(ctx context.Context) (map[string]bool, error) {
	pods := &corev1.PodList{}
	if err := a.client.List(ctx, pods); err != nil {
		return nil, fmt.Errorf("failed to list pods: %w", err)
	}
	used := map[string]bool{}
	for _, p := range pods.Items {
		if p.Spec.NodeName != a.opts.NodeName || p.Status.Phase == corev1.PodSucceeded ||
			p.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
			used[c.Image] = true
		}
	}
	return used, nil
}
