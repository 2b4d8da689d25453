package agent

import (
	"context"
	"errors"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/agent/runtime"
	"github.com/lpm-dev/lpm/internal/agent/state"
)

// GarbageCollector removes what no live migration or running restored pod
// needs: archives, records and imported images, also those of migrations
// that ended or vanished while the agent was down, and CRIU logs past their
// retention.
type GarbageCollector struct {
	Agent    *Agent
	Interval time.Duration
}

// NeedLeaderElection is false: every agent collects on its own node.
func (g *GarbageCollector) NeedLeaderElection() bool { return false }

// Start collects once at start and then every Interval until ctx ends.
func (g *GarbageCollector) Start(ctx context.Context) error {
	if g.Interval == 0 {
		g.Interval = 5 * time.Minute
	}
	log := logf.FromContext(ctx).WithName("gc")
	for {
		if err := g.Agent.CollectGarbage(logf.IntoContext(ctx, log)); err != nil {
			log.Error(err, "Garbage collection failed")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-g.Agent.clock.After(g.Interval):
		}
	}
}

// CollectGarbage makes one pass over the state records and the runtime's
// checkpoint images.
func (a *Agent) CollectGarbage(ctx context.Context) error {
	records, err := a.store.List()
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	known := map[string]bool{}
	live := map[string]bool{}
	for _, rec := range records {
		known[rec.UID] = true
		if err := a.collectRecord(ctx, rec); err != nil {
			errs = append(errs, err)
		}
		if !rec.Finished {
			live[rec.UID] = true
		}
	}
	if err := a.collectImages(ctx, known); err != nil {
		errs = append(errs, err)
	}
	// Without the records, every log directory would count as one of a
	// migration that ended.
	if err == nil {
		if err := a.collectLogs(ctx, live); err != nil {
			errs = append(errs, err)
		}
	}
	if err == nil {
		a.collectVolumeLayers(ctx, known)
	}
	return errors.Join(errs...)
}

// collectRecord finishes a record whose migration no longer needs it.
func (a *Agent) collectRecord(ctx context.Context, rec *state.Record) error {
	log := logf.FromContext(ctx).WithValues("PodMigration", klog.KRef(rec.Namespace, rec.Name), "uid", rec.UID,
		"role", rec.Role)
	pm := &lpmv1.PodMigration{}
	err := a.client.Get(ctx, types.NamespacedName{Namespace: rec.Namespace, Name: rec.Name}, pm)
	switch {
	case apierrors.IsNotFound(err) || (err == nil && string(pm.UID) != rec.UID):
		pm = nil
	case err != nil:
		return err
	}

	if pm != nil && !rec.Finished {
		// A live migration: the reconciler owns it.
		return nil
	}
	if rec.Role == state.RoleSource {
		if pm == nil && len(rec.Paused) > 0 {
			settled, err := a.settleOrphanedSource(ctx, rec)
			if err != nil {
				return err
			}
			if !settled {
				log.Info("The killed source of a migration that vanished stays frozen until its pod is deleted",
					"pod", rec.Namespace+"/"+rec.PodName)
				return nil
			}
			log.Info("Settled the source of a migration that vanished")
		}
		a.offers.Remove(rec.UID)
		a.removeArchives(ctx, rec)
		return a.store.Delete(rec.UID, rec.Role)
	}

	// Target: the images stay while a pod on this node uses them.
	inUse, err := a.podUsesImages(ctx, rec)
	if err != nil || inUse {
		return err
	}
	a.removeImported(ctx, rec)
	log.V(2).Info("Removed checkpoint images no pod uses")
	return a.store.Delete(rec.UID, rec.Role)
}

// settleOrphanedSource handles the frozen containers of a migration that
// vanished while the agent was down, and reports whether none is left. If
// the agent had killed them, or the restored pod runs, the migration
// succeeded and the source must never run again. Then the source is killed
// and thawed only once its pod is being deleted, because the kubelet would
// restart a container of a live pod. Otherwise the source is thawed.
func (a *Agent) settleOrphanedSource(ctx context.Context, rec *state.Record) (bool, error) {
	restoredRuns := rec.Killed
	if !restoredRuns && rec.RestoredPod != "" {
		pm := &lpmv1.PodMigration{}
		pm.Namespace, pm.Status.RestoredPod, pm.UID = rec.Namespace, rec.RestoredPod, types.UID(rec.UID)
		exists, err := a.restoredPodExists(ctx, pm)
		if err != nil {
			return false, err
		}
		restoredRuns = exists
	}
	if !restoredRuns {
		for _, id := range rec.Paused {
			if err := a.runtime.Resume(ctx, id); err != nil && !errors.Is(err, runtime.ErrNotFound) {
				return false, err
			}
		}
		rec.Paused = nil
		return true, a.store.Save(rec)
	}
	if err := a.killFrozen(ctx, rec); err != nil {
		return false, err
	}
	terminating, err := a.sourcePodTerminating(ctx, rec)
	if err != nil || !terminating {
		return false, err
	}
	return true, a.thawKilled(ctx, rec)
}

// collectImages removes checkpoint images the agent imported whose
// migration has no record any more and that no pod on this node uses.
func (a *Agent) collectImages(ctx context.Context, known map[string]bool) error {
	images, err := a.runtime.ListImages(ctx, `labels."`+labelMigrationUID+`"`)
	if err != nil {
		return err
	}
	used, err := a.imagesInUse(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, img := range images {
		uid := img.Labels[labelMigrationUID]
		if known[uid] || used[img.Name] || !strings.HasPrefix(img.Name, "localhost/lpm/") {
			continue
		}
		if err := a.runtime.RemoveImage(ctx, img.Name); err != nil {
			errs = append(errs, err)
		}
	}
	// Transfers of migrations the agent still has a record of may run.
	// The others left their unfinished ingests and extraction snapshots.
	live := func(ref string) bool {
		for uid := range known {
			if strings.HasPrefix(ref, ingestPrefix(uid)) {
				return true
			}
		}
		return false
	}
	if err := a.runtime.AbortImports(ctx, a.opts.Snapshotter, "lpm-", live); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
