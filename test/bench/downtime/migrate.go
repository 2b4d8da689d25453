package downtime

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/lab/node"
	"github.com/lpm-dev/lpm/test/bench/benchlab"
	"github.com/lpm-dev/lpm/test/bench/results"
)

// migrationTimeout bounds one migration, from creation to Succeeded.
const migrationTimeout = 15 * time.Minute

// Stage names of a migration by lpm, in time order. They add up to the
// downtime, from the cut to the restored pod Ready.
const (
	StageFreeze        = "freeze"
	StageCRIUDump      = "CRIU dump"
	StageRuntimeCopies = "runtime copies"
	StageImageBuild    = "image build"
	StageTransfer      = "transfer"
	StageReport        = "report, create pod"
	StageSandbox       = "sandbox"
	StageRestoreCopy   = "restore copy"
	StageCRIURestore   = "CRIU restore"
	StageToReady       = "to Ready"
	// StageDowntime is the whole interval from the cut to Ready, as the
	// PodMigration's status.downtime reports it.
	StageDowntime = "downtime"
)

// MigrationStages lists the stages of Migrate in time order.
var MigrationStages = []string{StageFreeze, StageCRIUDump, StageRuntimeCopies, StageImageBuild, StageTransfer,
	StageReport, StageSandbox, StageRestoreCopy, StageCRIURestore, StageToReady}

// Migrate moves a randmem pod of mib MiB from node-a to node-b with a
// PodMigration and measures the downtime and its stages. It checks that
// the restored process holds the same memory as the source did.
func (r *Runner) Migrate(ctx context.Context, mib, index int) results.Run {
	run := r.newRun(mib, index)
	if err := r.migrate(ctx, &run); err != nil {
		run.Error = err.Error()
	}
	if err := r.Lab.CleanNamespace(context.WithoutCancel(ctx), 3*time.Minute); err != nil {
		run.Error = errors.Join(errors.New(run.Error), err).Error()
	}
	return run
}

func (r *Runner) migrate(ctx context.Context, run *results.Run) error {
	name := fmt.Sprintf("lpm-%d-%d", run.SizeMiB, run.Index)
	pods, err := r.Lab.WatchPods(ctx)
	if err != nil {
		return err
	}
	defer pods.Stop()
	containerID, err := r.startPod(ctx, pods, name, run.SizeMiB)
	if err != nil {
		return err
	}
	before, err := r.Lab.Checksum(ctx, name)
	if err != nil {
		return err
	}

	watches := append(sourceWatches(r.Lab.Source, containerID), targetWatches(r.Lab.Target)...)
	tracer, err := benchlab.StartTracer(ctx, []*node.Node{r.Lab.Source, r.Lab.Target}, watches)
	if err != nil {
		return err
	}
	defer tracer.Stop()

	// The settle time only delays Succeeded, after the restored pod is
	// Ready, so a short one keeps the runs short without changing the
	// downtime.
	pm := &lpmv1.PodMigration{
		ObjectMeta: metav1.ObjectMeta{Namespace: benchlab.Namespace, Name: name},
		Spec: lpmv1.PodMigrationSpec{PodName: name, TargetNode: r.Lab.Target.Name(),
			Settle: &metav1.Duration{Duration: time.Second}},
	}
	created := time.Now()
	if err := r.Lab.Clients.Client.Create(ctx, pm); err != nil {
		return fmt.Errorf("failed to create PodMigration %s: %w", name, err)
	}
	pm, err = r.waitMigration(ctx, name)
	if err != nil {
		return err
	}
	run.Values["createdToSucceeded"] = time.Since(created).Seconds()

	restored := pods.Times(pm.Status.RestoredPod)
	if err := r.placeMigration(run, pm, tracer.Marks(), restored); err != nil {
		return err
	}
	after, err := r.Lab.Checksum(ctx, pm.Status.RestoredPod)
	if err != nil {
		return err
	}
	if after != before {
		return fmt.Errorf("the restored pod's memory differs from the source's: checksum %s, want %s", after,
			before)
	}
	run.Values["checksumMatches"] = 1
	return nil
}

// waitMigration waits until the PodMigration succeeds and returns it. A
// failed migration returns its reason as the error.
func (r *Runner) waitMigration(ctx context.Context, name string) (*lpmv1.PodMigration, error) {
	deadline := time.Now().Add(migrationTimeout)
	for {
		pm := &lpmv1.PodMigration{}
		err := r.Lab.Clients.Client.Get(ctx, client.ObjectKey{Namespace: benchlab.Namespace, Name: name}, pm)
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, err
		}
		switch pm.Status.Phase {
		case lpmv1.PhaseSucceeded:
			return pm, nil
		case lpmv1.PhaseFailed:
			c := meta.FindStatusCondition(pm.Status.Conditions, lpmv1.ConditionSucceeded)
			if c != nil {
				return pm, fmt.Errorf("migration %s failed: %s: %s", name, c.Reason, c.Message)
			}
			return pm, fmt.Errorf("migration %s failed", name)
		}
		if time.Now().After(deadline) {
			return pm, fmt.Errorf("migration %s not done after %s (phase %s)", name, migrationTimeout,
				pm.Status.Phase)
		}
		select {
		case <-ctx.Done():
			return pm, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// placeMigration splits the downtime of pm into stages.
func (r *Runner) placeMigration(run *results.Run, pm *lpmv1.PodMigration, marks []benchlab.Mark,
	restored benchlab.PodTimes) error {
	if pm.Status.CutTime == nil || pm.Status.RestoredReadyTime == nil || pm.Status.Downtime == nil {
		return fmt.Errorf("migration %s succeeded without cutTime, restoredReadyTime or downtime", pm.Name)
	}
	cut := pm.Status.CutTime.Time
	src, dst := r.Lab.Source.Name(), r.Lab.Target.Name()
	var archiveBytes int64
	for _, c := range pm.Status.Containers {
		archiveBytes += c.ArchiveBytes
	}
	points := []benchlab.Point{
		{Stage: "cut", At: cut},
		{Stage: StageFreeze, Match: benchlab.On(src, "/tasks/paused", "")},
		{Stage: StageCRIUDump, Match: benchlab.On(src, "create:ingest", "")},
		{Stage: StageRuntimeCopies, Match: benchlab.On(src, "close:archive", "")},
		// The target's agent prepares the snapshot it extracts the layer
		// into just before it opens the stream, and commits it when the
		// layer is complete and verified.
		{Stage: StageImageBuild, Match: benchlab.OnPrefix(dst, "/snapshot/prepare", "extract-lpm-")},
		{Stage: StageTransfer, Match: benchlab.On(dst, "/snapshot/commit", "")},
		{Stage: StageReport, At: restored.Added},
	}
	points = append(points, restorePoints(dst, restored.ContainerID)...)
	points = append(points, benchlab.Point{Stage: StageToReady, At: pm.Status.RestoredReadyTime.Time})
	tl, err := benchlab.Place(marks, points)
	if err != nil {
		return err
	}
	for name, v := range tl.Stages {
		run.Stages[name] = v
	}
	run.Stages[StageDowntime] = pm.Status.Downtime.Seconds()
	run.Values["archiveBytes"] = float64(archiveBytes)
	if d, ok := tl.Between(StageImageBuild, StageTransfer); ok && d > 0 {
		run.Values["transferMiBps"] = float64(archiveBytes) / (1 << 20) / d
	}
	for _, c := range pm.Status.Containers {
		if c.FrozenTime != nil {
			run.Values["criuFrozenSeconds"] = c.FrozenTime.Seconds()
		}
		if c.FreezingTime != nil {
			run.Values["criuFreezingSeconds"] = c.FreezingTime.Seconds()
		}
	}
	for _, t := range pm.Status.PhaseTransitions {
		run.Values["phase."+string(t.Phase)] = t.Time.Sub(cut).Seconds()
	}
	run.Detail["stageOrder"] = tl.Order
	if len(tl.Missing) > 0 {
		run.Detail["missingMarks"] = tl.Missing
	}
	run.Detail["marks"] = marksDetail(marks, cut.Add(-time.Second))
	r.logf("lpm %d MiB run %d: downtime %.3fs (%d stages, missing %v)", run.SizeMiB, run.Index,
		run.Stages[StageDowntime], len(tl.Order), tl.Missing)
	return nil
}
