package controller

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// Times of the restoring fixtures: the source agent's cut, the kubelet's
// whole-second Ready transition of the restored pod, and the target
// agent's observation of that transition.
var (
	cutAt        = t0.Add(1250 * time.Millisecond)
	readyAt      = t0.Add(4 * time.Second)
	agentReadyAt = readyAt.Add(137 * time.Millisecond)
)

// restoring returns a migration in Restoring whose restored pod exists.
func restoring() *lpmv1.PodMigration {
	m := inPhase(lpmv1.PhaseRestoring)
	checkpointed(m)
	imagesReady(m)
	m.Status.CutTime = &metav1.MicroTime{Time: cutAt}
	m.Status.RestoredPod = "web-restored"
	m.Status.CheckpointImages = map[string]string{"app": appImage}
	return m
}

func reportRestored(m *lpmv1.PodMigration) {
	setAgentCondition(&m.Status.Target.Conditions, lpmv1.AgentConditionRestored, metav1.ConditionTrue, "Restored", "")
	m.Status.Target.Containers[0].Restored = true
	m.Status.Target.ReadyTime = &metav1.MicroTime{Time: agentReadyAt}
}

func verified(m *lpmv1.PodMigration) {
	reportRestored(m)
	m.Status.Conditions = append(m.Status.Conditions, metav1.Condition{
		Type: lpmv1.ConditionRestored, Status: metav1.ConditionTrue, Reason: string(lpmv1.ReasonVerified),
		ObservedGeneration: 1, LastTransitionTime: metav1.NewTime(t0.Add(10 * time.Second)),
	})
}

func TestStepRestoring(t *testing.T) {
	testCases := []struct {
		name            string
		migration       func(*lpmv1.PodMigration)
		world           func(*world)
		now             time.Time
		wantPhase       lpmv1.MigrationPhase
		wantReason      lpmv1.Reason
		wantRestored    lpmv1.Reason
		wantSource      lpmv1.Reason
		wantCreate      bool
		wantDelete      bool
		wantRelease     bool
		wantReadyTime   time.Time
		wantDowntime    time.Duration
		wantRequeue     time.Duration
		wantWarningOnly lpmv1.Reason
	}{
		{
			name:       "restored pod missing from cache",
			world:      func(w *world) { w.restored = nil },
			wantPhase:  lpmv1.PhaseRestoring,
			wantCreate: true,
		},
		{
			name: "pod not ready yet",
			world: func(w *world) {
				w.restored.Status.Conditions[0].Status = corev1.ConditionFalse
			},
			wantPhase: lpmv1.PhaseRestoring, wantRestored: lpmv1.ReasonInProgress,
		},
		{
			name:      "agent has not reported",
			wantPhase: lpmv1.PhaseRestoring, wantRestored: lpmv1.ReasonInProgress,
		},
		{
			name: "agent has not reported the ready time",
			migration: func(m *lpmv1.PodMigration) {
				reportRestored(m)
				m.Status.Target.ReadyTime = nil
			},
			now:       readyAt.Add(DefaultSettle + time.Second),
			wantPhase: lpmv1.PhaseRestoring, wantRestored: lpmv1.ReasonInProgress,
		},
		{
			name: "ready time of an earlier ready period",
			migration: func(m *lpmv1.PodMigration) {
				reportRestored(m)
				m.Status.Target.ReadyTime = &metav1.MicroTime{Time: readyAt.Add(-300 * time.Millisecond)}
			},
			now:       readyAt.Add(DefaultSettle + time.Second),
			wantPhase: lpmv1.PhaseRestoring, wantRestored: lpmv1.ReasonInProgress,
		},
		{
			name:          "settling",
			migration:     reportRestored,
			now:           readyAt.Add(2 * time.Second),
			wantPhase:     lpmv1.PhaseRestoring,
			wantRestored:  lpmv1.ReasonSettling,
			wantReadyTime: agentReadyAt,
			wantRequeue:   3137 * time.Millisecond,
		},
		{
			name:          "verified waits for source agent",
			migration:     reportRestored,
			now:           agentReadyAt.Add(DefaultSettle),
			wantPhase:     lpmv1.PhaseRestoring,
			wantRestored:  lpmv1.ReasonVerified,
			wantSource:    lpmv1.ReasonInProgress,
			wantReadyTime: agentReadyAt,
			wantDowntime:  2887 * time.Millisecond,
			wantRequeue:   cleanupTimeout,
		},
		{
			name:      "target lease renewed before settle ended",
			migration: reportRestored,
			world: func(w *world) {
				w.targetLease = fixtureLease("node-b", agentReadyAt.Add(DefaultSettle-time.Microsecond))
			},
			now:           agentReadyAt.Add(DefaultSettle + 30*time.Second),
			wantPhase:     lpmv1.PhaseRestoring,
			wantRestored:  lpmv1.ReasonWaitingForNodeLease,
			wantReadyTime: agentReadyAt,
			wantRequeue:   nodeLeaseRecheck,
		},
		{
			name:         "target lease missing",
			migration:    reportRestored,
			world:        func(w *world) { w.targetLease = nil },
			now:          agentReadyAt.Add(DefaultSettle + 30*time.Second),
			wantPhase:    lpmv1.PhaseRestoring,
			wantRestored: lpmv1.ReasonWaitingForNodeLease,
			wantRequeue:  nodeLeaseRecheck,
		},
		{
			name:      "target lease renewed right at settle end",
			migration: reportRestored,
			world: func(w *world) {
				w.targetLease = fixtureLease("node-b", agentReadyAt.Add(DefaultSettle))
			},
			now:           agentReadyAt.Add(DefaultSettle + 30*time.Second),
			wantPhase:     lpmv1.PhaseRestoring,
			wantRestored:  lpmv1.ReasonVerified,
			wantSource:    lpmv1.ReasonInProgress,
			wantReadyTime: agentReadyAt,
			wantDowntime:  2887 * time.Millisecond,
		},
		{
			// A node that died in the settle window renews nothing, and its
			// restored pod still shows Ready: the restore timeout rolls back.
			name:      "target lease stale until restore timeout",
			migration: reportRestored,
			world: func(w *world) {
				w.targetLease = fixtureLease("node-b", agentReadyAt.Add(time.Second))
			},
			now:       t0.Add(DefaultRestoreTimeout),
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonRestoreTimedOut,
		},
		{
			// CleanedUp comes only after the deletion, when the agent has
			// thawed the killed source.
			name: "source agent cleaned up without killing",
			migration: func(m *lpmv1.PodMigration) {
				verified(m)
				setAgentCondition(&m.Status.Source.Conditions, lpmv1.AgentConditionCleanedUp, metav1.ConditionTrue, "CleanedUp", "")
			},
			now:          t0.Add(11 * time.Second),
			wantPhase:    lpmv1.PhaseRestoring,
			wantRestored: lpmv1.ReasonVerified,
			wantSource:   lpmv1.ReasonInProgress,
			wantRequeue:  cleanupTimeout - time.Second,
		},
		{
			name: "source agent killed the frozen source",
			migration: func(m *lpmv1.PodMigration) {
				verified(m)
				setAgentCondition(&m.Status.Source.Conditions, lpmv1.AgentConditionKilled, metav1.ConditionTrue,
					string(lpmv1.ReasonSourceKilled), "")
			},
			now:          t0.Add(11 * time.Second),
			wantPhase:    lpmv1.PhaseRestoring,
			wantRestored: lpmv1.ReasonVerified,
			wantSource:   lpmv1.ReasonSourceDeleting,
			wantDelete:   true,
			wantRequeue:  sourceDeletionPoll,
		},
		{
			name:            "source agent silent past cleanup timeout",
			migration:       verified,
			now:             t0.Add(10*time.Second + cleanupTimeout),
			wantPhase:       lpmv1.PhaseRestoring,
			wantRestored:    lpmv1.ReasonVerified,
			wantSource:      lpmv1.ReasonSourceDeleting,
			wantDelete:      true,
			wantRequeue:     sourceDeletionPoll,
			wantWarningOnly: lpmv1.ReasonCleanupTimedOut,
		},
		{
			name:      "source terminating",
			migration: verified,
			world: func(w *world) {
				w.pod.DeletionTimestamp = &metav1.Time{Time: t0}
			},
			now:          t0.Add(11 * time.Second),
			wantPhase:    lpmv1.PhaseRestoring,
			wantRestored: lpmv1.ReasonVerified,
			wantSource:   lpmv1.ReasonSourceDeleting,
			wantRequeue:  sourceDeletionPoll,
		},
		{
			name:         "source gone finishes",
			migration:    verified,
			world:        func(w *world) { w.pod = nil },
			now:          t0.Add(11 * time.Second),
			wantPhase:    lpmv1.PhaseSucceeded,
			wantReason:   lpmv1.ReasonMigrationComplete,
			wantRestored: lpmv1.ReasonVerified,
			wantSource:   lpmv1.ReasonSourceDeleted,
			wantRelease:  true,
		},
		{
			name:         "verified past restore timeout still finishes",
			migration:    verified,
			world:        func(w *world) { w.pod = nil },
			now:          t0.Add(DefaultOverallTimeout + time.Hour),
			wantPhase:    lpmv1.PhaseSucceeded,
			wantReason:   lpmv1.ReasonMigrationComplete,
			wantRestored: lpmv1.ReasonVerified,
			wantSource:   lpmv1.ReasonSourceDeleted,
			wantRelease:  true,
		},
		{
			name: "keep finishes right after verification",
			migration: func(m *lpmv1.PodMigration) {
				reportRestored(m)
				m.Spec.SourcePolicy = lpmv1.SourcePolicyKeep
			},
			now:          agentReadyAt.Add(DefaultSettle),
			wantPhase:    lpmv1.PhaseSucceeded,
			wantReason:   lpmv1.ReasonMigrationComplete,
			wantRestored: lpmv1.ReasonVerified,
			wantSource:   lpmv1.ReasonSourceKept,
			wantRelease:  true,
		},
		{
			name:      "container restarted",
			migration: reportRestored,
			world: func(w *world) {
				w.restored.Status.ContainerStatuses[0].RestartCount = 1
			},
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonContainerRestarted,
		},
		{
			name: "image never pulled",
			world: func(w *world) {
				w.restored.Status.ContainerStatuses[0].State.Waiting = &corev1.ContainerStateWaiting{
					Reason: "ErrImageNeverPull", Message: "image not present",
				}
			},
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonRestoredPodFailed,
		},
		{
			name:      "restored pod failed",
			world:     func(w *world) { w.restored.Status.Phase = corev1.PodFailed },
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonRestoredPodFailed,
		},
		{
			name:      "restored pod deleted by someone",
			world:     func(w *world) { w.restored.DeletionTimestamp = &metav1.Time{Time: t0} },
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonRestoredPodFailed,
		},
		{
			name:      "pod of the same name not ours",
			world:     func(w *world) { w.restored.Annotations = nil },
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonRestoredPodFailed,
		},
		{
			name: "agent reports not restored",
			migration: func(m *lpmv1.PodMigration) {
				setAgentCondition(&m.Status.Target.Conditions, lpmv1.AgentConditionRestored, metav1.ConditionFalse,
					"NotRestored", "container app has no restored annotation")
			},
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonNotRestored,
		},
		{
			name: "container started afresh",
			migration: func(m *lpmv1.PodMigration) {
				reportRestored(m)
				m.Status.Target.Containers[0].Restored = false
			},
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonNotRestored,
		},
		{
			name:      "restore timed out",
			now:       t0.Add(DefaultRestoreTimeout),
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonRestoreTimedOut,
		},
		{
			name:      "source deleted before verification",
			world:     func(w *world) { w.pod = nil },
			wantPhase: lpmv1.PhaseFailed, wantReason: lpmv1.ReasonPodGone,
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			m := restoring()
			if tc.migration != nil {
				tc.migration(m)
			}
			now := tc.now
			if now.IsZero() {
				now = readyAt
			}
			w := fixtureWorld(now)
			w.restored = readyRestoredPod(readyAt)
			if tc.world != nil {
				tc.world(w)
			}

			o := decide(m, w, NewSlots(5, 2))

			assertPhase(t, o, tc.wantPhase)
			if tc.wantPhase == lpmv1.PhaseFailed {
				assertCondition(t, o, lpmv1.ConditionSucceeded, metav1.ConditionFalse, tc.wantReason)
				assertCondition(t, o, lpmv1.ConditionRestored, metav1.ConditionFalse, tc.wantReason)
				if !o.deleteRestored || o.deleteSource {
					t.Errorf("deleteRestored = %v, deleteSource = %v, want the restored pod deleted and the source kept",
						o.deleteRestored, o.deleteSource)
				}
			}
			if tc.wantPhase == lpmv1.PhaseSucceeded {
				assertCondition(t, o, lpmv1.ConditionSucceeded, metav1.ConditionTrue, tc.wantReason)
				if !o.removeFinalizer {
					t.Errorf("succeeded migration keeps its finalizer")
				}
			}
			if tc.wantRestored != "" {
				status := metav1.ConditionUnknown
				if tc.wantRestored == lpmv1.ReasonVerified {
					status = metav1.ConditionTrue
				}
				assertCondition(t, o, lpmv1.ConditionRestored, status, tc.wantRestored)
			}
			if tc.wantSource != "" {
				status := metav1.ConditionUnknown
				switch tc.wantSource {
				case lpmv1.ReasonSourceDeleted:
					status = metav1.ConditionTrue
				case lpmv1.ReasonSourceKept:
					status = metav1.ConditionFalse
				}
				assertCondition(t, o, lpmv1.ConditionSourceRemoved, status, tc.wantSource)
			}
			if got := o.createRestored != nil; got != tc.wantCreate {
				t.Errorf("createRestored = %v, want %v", got, tc.wantCreate)
			}
			if o.deleteSource != tc.wantDelete {
				t.Errorf("deleteSource = %v, want %v", o.deleteSource, tc.wantDelete)
			}
			if o.releaseRestored != tc.wantRelease {
				t.Errorf("releaseRestored = %v, want %v", o.releaseRestored, tc.wantRelease)
			}
			if tc.wantDowntime != 0 && (o.status.Downtime == nil || o.status.Downtime.Duration != tc.wantDowntime) {
				t.Errorf("downtime = %v, want %s", o.status.Downtime, tc.wantDowntime)
			}
			if !tc.wantReadyTime.IsZero() &&
				(o.status.RestoredReadyTime == nil || !o.status.RestoredReadyTime.Time.Equal(tc.wantReadyTime)) {
				t.Errorf("restoredReadyTime = %v, want %s", o.status.RestoredReadyTime, tc.wantReadyTime)
			}
			if tc.wantRequeue != 0 && o.requeueAfter != tc.wantRequeue {
				t.Errorf("requeueAfter = %s, want %s", o.requeueAfter, tc.wantRequeue)
			}
			if tc.wantWarningOnly != "" {
				found := false
				for _, e := range o.events {
					found = found || (e.reason == tc.wantWarningOnly && e.eventType == corev1.EventTypeWarning)
				}
				if !found {
					t.Errorf("events %v lack warning %s", eventReasons(o), tc.wantWarningOnly)
				}
			}
		})
	}
}

func TestStepRestoringKeepHasNoDowntime(t *testing.T) {
	m := restoring()
	reportRestored(m)
	m.Spec.SourcePolicy = lpmv1.SourcePolicyKeep
	w := fixtureWorld(t0.Add(time.Minute))
	w.restored = readyRestoredPod(t0.Add(4 * time.Second))

	o := decide(m, w, NewSlots(5, 2))

	if o.status.Downtime != nil {
		t.Errorf("downtime = %s, want none: with sourcePolicy Keep the source never stopped", o.status.Downtime.Duration)
	}
}

func TestPodEndDetail(t *testing.T) {
	testCases := []struct {
		name string
		pod  *corev1.Pod
		want string
	}{
		{
			name: "pod message",
			pod: &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "Evicted",
				Message: "low on memory"}},
			want: "Evicted low on memory",
		},
		{
			name: "container that cannot start",
			pod: &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed,
				ContainerStatuses: []corev1.ContainerStatus{{Name: "app", State: corev1.ContainerState{
					Waiting: &corev1.ContainerStateWaiting{Reason: "CreateContainerError",
						Message: "criu failed: type NOTIFY errno 0"}}}}}},
			want: `container "app" waits: CreateContainerError criu failed: type NOTIFY errno 0`,
		},
		{
			name: "terminated container",
			pod: &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed,
				ContainerStatuses: []corev1.ContainerStatus{{Name: "app", State: corev1.ContainerState{
					Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "Error"}}}}}},
			want: `container "app" terminated with exit code 137: Error`,
		},
		{
			name: "no detail",
			pod:  &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed}},
			want: "the kubelet reported no reason; the pod's events hold the runtime's error",
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := podEndDetail(tc.pod); got != tc.want {
				t.Errorf("podEndDetail() = %q, want %q", got, tc.want)
			}
		})
	}
}
