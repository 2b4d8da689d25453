package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// rewatchDelay is the pause before the watch starts again after the API
// server ended it with an error, such as an expired resource version.
const rewatchDelay = time.Second

// errMigrationDeleted is returned when the followed PodMigration is deleted.
var errMigrationDeleted = errors.New("the PodMigration was deleted")

// follower watches one PodMigration.
type follower struct {
	client client.WithWatch
	clock  clock.WithTicker
	key    types.NamespacedName
	// observe is called with each version of the object and returns true
	// when following should stop.
	observe func(pm *lpmv1.PodMigration) bool
	// tick is called on every tick of tickInterval when not nil.
	tick         func()
	tickInterval time.Duration
}

// run gets the PodMigration and watches it until observe returns true, the
// object is deleted (errMigrationDeleted) or ctx ends (the context's
// cause). It returns the last version seen, which is nil when none was.
func (f *follower) run(ctx context.Context) (*lpmv1.PodMigration, error) {
	var tickC <-chan time.Time
	if f.tick != nil && f.tickInterval > 0 {
		ticker := f.clock.NewTicker(f.tickInterval)
		defer ticker.Stop()
		tickC = ticker.C()
	}

	var last *lpmv1.PodMigration
	for {
		pm := &lpmv1.PodMigration{}
		if err := f.client.Get(ctx, f.key, pm); err != nil {
			switch {
			case ctx.Err() != nil:
				return last, context.Cause(ctx)
			case apierrors.IsNotFound(err):
				return last, errMigrationDeleted
			default:
				return last, fmt.Errorf("failed to get PodMigration %s: %w", f.key, err)
			}
		}
		last = pm
		if f.observe(pm) {
			return pm, nil
		}

		result, done, err := f.watchFrom(ctx, pm.ResourceVersion, tickC)
		if result != nil {
			last = result
		}
		if done || err != nil {
			return last, err
		}

		// The watch ended with an error event: start over with a fresh
		// read after a pause.
		select {
		case <-ctx.Done():
			return last, context.Cause(ctx)
		case <-f.clock.After(rewatchDelay):
		}
	}
}

// watchFrom watches from resourceVersion on. done is true when following
// should stop. done false with a nil error means the watch must start again.
func (f *follower) watchFrom(ctx context.Context, resourceVersion string, tickC <-chan time.Time) (
	last *lpmv1.PodMigration, done bool, err error) {
	lw := &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.FieldSelector = fields.OneTermEqualSelector("metadata.name", f.key.Name).String()
			return f.client.Watch(ctx, &lpmv1.PodMigrationList{}, client.InNamespace(f.key.Namespace),
				&client.ListOptions{Raw: &opts})
		},
	}
	w, err := watchtools.NewRetryWatcherWithContext(ctx, resourceVersion, lw)
	if err != nil {
		return nil, true, fmt.Errorf("failed to watch PodMigration %s: %w", f.key, err)
	}
	defer w.Stop()

	for {
		select {
		case <-ctx.Done():
			return last, true, context.Cause(ctx)
		case <-tickC:
			f.tick()
		case event, ok := <-w.ResultChan():
			if !ok {
				return last, false, nil
			}
			switch event.Type {
			case watch.Added, watch.Modified:
				pm, isMigration := event.Object.(*lpmv1.PodMigration)
				if !isMigration {
					continue
				}
				last = pm
				if f.observe(pm) {
					return pm, true, nil
				}
			case watch.Deleted:
				if pm, isMigration := event.Object.(*lpmv1.PodMigration); isMigration {
					last = pm
				}
				return last, true, errMigrationDeleted
			case watch.Error:
				klog.FromContext(ctx).V(2).Info("Watch of PodMigration ended, starting again",
					"podMigration", f.key, "error", apierrors.FromObject(event.Object))
				return last, false, nil
			}
		}
	}
}
