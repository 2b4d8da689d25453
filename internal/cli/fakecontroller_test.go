package cli

import (
	"context"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// stepPause separates the fake controller's status writes, so that the
// command under test receives each one as a watch event of its own.
const stepPause = 50 * time.Millisecond

// fakeController plays the lpm controller and both node agents in the
// command tests: it writes, step by step, the status that they would write
// for a migration. It is a fake because the real controller and agents
// need kubelets and CRIU, which the test API server lacks.
type fakeController struct {
	t *testing.T
}

func newFakeController(t *testing.T) *fakeController {
	return &fakeController{t: t}
}

// awaitMigration waits until a PodMigration of pod exists in ns and returns
// it.
func (f *fakeController) awaitMigration(ctx context.Context, ns, pod string) *lpmv1.PodMigration {
	f.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		list := &lpmv1.PodMigrationList{}
		err := testClient.List(ctx, list, client.InNamespace(ns), client.MatchingFieldsSelector{
			Selector: fields.OneTermEqualSelector("spec.podName", pod)})
		if err != nil {
			f.t.Fatalf("failed to list PodMigrations: %v", err)
		}
		if len(list.Items) > 0 {
			return &list.Items[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.t.Fatalf("no PodMigration of pod %s/%s appeared", ns, pod)
	return nil
}

// write applies mutate to the latest status of pm and writes it.
func (f *fakeController) write(ctx context.Context, pm *lpmv1.PodMigration, mutate func(*lpmv1.PodMigrationStatus)) {
	f.t.Helper()
	key := types.NamespacedName{Namespace: pm.Namespace, Name: pm.Name}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		current := &lpmv1.PodMigration{}
		if err := testClient.Get(ctx, key, current); err != nil {
			return err
		}
		mutate(&current.Status)
		return testClient.Status().Update(ctx, current)
	})
	if err != nil {
		f.t.Fatalf("failed to write the status of PodMigration %s: %v", key, err)
	}
	time.Sleep(stepPause)
}

// enterPhase sets the phase and records its transition.
func enterPhase(status *lpmv1.PodMigrationStatus, phase lpmv1.MigrationPhase) {
	status.Phase = phase
	status.PhaseTransitions = append(status.PhaseTransitions, lpmv1.PhaseTransition{Phase: phase, Time: metav1.NowMicro()})
}

// setCondition sets a condition as the controller and the agents do.
func setCondition(conditions *[]metav1.Condition, conditionType string, status metav1.ConditionStatus,
	reason lpmv1.Reason, message string) {
	meta.SetStatusCondition(conditions, metav1.Condition{Type: conditionType, Status: status,
		Reason: string(reason), Message: message})
}

// preflight writes what the controller and the agents write while the
// preflight checks run and when they pass.
func (f *fakeController) preflight(ctx context.Context, pm *lpmv1.PodMigration, source, target string) {
	f.write(ctx, pm, func(s *lpmv1.PodMigrationStatus) {
		s.StartTime = &metav1.Time{Time: time.Now()}
		enterPhase(s, lpmv1.PhasePending)
		setCondition(&s.Conditions, lpmv1.ConditionSucceeded, metav1.ConditionUnknown, lpmv1.ReasonPending,
			"running the preflight checks")
	})
	f.write(ctx, pm, func(s *lpmv1.PodMigrationStatus) {
		s.SourcePodUID = "6b1f3d2a-9c4e-4f0b-8a7d-2e5c1b3a4d6f"
		s.SourceNode, s.TargetNode = source, target
		setCondition(&s.Conditions, lpmv1.ConditionPreflightPassed, metav1.ConditionUnknown,
			lpmv1.ReasonWaitingForAgents, "waiting for the agents")
	})
	f.write(ctx, pm, func(s *lpmv1.PodMigrationStatus) {
		s.Source = &lpmv1.SourceAgentStatus{}
		s.Target = &lpmv1.TargetAgentStatus{}
		setCondition(&s.Source.Conditions, lpmv1.AgentConditionPrepared, metav1.ConditionTrue, "Prepared", "")
		setCondition(&s.Target.Conditions, lpmv1.AgentConditionPrepared, metav1.ConditionTrue, "Prepared", "")
	})
	f.write(ctx, pm, func(s *lpmv1.PodMigrationStatus) {
		setCondition(&s.Conditions, lpmv1.ConditionPreflightPassed, metav1.ConditionTrue,
			lpmv1.ReasonChecksPassed, "pod can move")
	})
}

// checkpoint writes the checkpoint of two containers of 32 and 16 MiB and
// the phases up to PreparingImages.
func (f *fakeController) checkpoint(ctx context.Context, pm *lpmv1.PodMigration) {
	f.write(ctx, pm, func(s *lpmv1.PodMigrationStatus) {
		enterPhase(s, lpmv1.PhaseCheckpointing)
		setCondition(&s.Conditions, lpmv1.ConditionSucceeded, metav1.ConditionUnknown, lpmv1.ReasonInProgress,
			"checkpointing")
	})
	f.write(ctx, pm, func(s *lpmv1.PodMigrationStatus) {
		s.CutTime = &metav1.MicroTime{Time: time.Now()}
		s.Source.CutTime = s.CutTime
		s.Source.Containers = []lpmv1.SourceContainerStatus{{Name: "app", ArchiveBytes: 32 * mib}}
	})
	f.write(ctx, pm, func(s *lpmv1.PodMigrationStatus) {
		s.Source.Containers = append(s.Source.Containers, lpmv1.SourceContainerStatus{Name: "sidecar",
			ArchiveBytes: 16 * mib})
		setCondition(&s.Source.Conditions, lpmv1.AgentConditionCheckpointed, metav1.ConditionTrue, "Checkpointed", "")
	})
	// The controller enters CheckpointComplete and PreparingImages in one
	// status write.
	f.write(ctx, pm, func(s *lpmv1.PodMigrationStatus) {
		s.Containers = []lpmv1.ContainerMigrationStatus{
			{Name: "app", ArchiveBytes: 32 * mib, PagesWritten: 8192},
			{Name: "sidecar", ArchiveBytes: 16 * mib, PagesWritten: 4096},
		}
		setCondition(&s.Conditions, lpmv1.ConditionCheckpointed, metav1.ConditionTrue, lpmv1.ReasonCheckpointed, "")
		enterPhase(s, lpmv1.PhaseCheckpointComplete)
		enterPhase(s, lpmv1.PhasePreparingImages)
	})
}

// transfer writes the target agent's transfer progress up to 48 MiB.
func (f *fakeController) transfer(ctx context.Context, pm *lpmv1.PodMigration) {
	for _, done := range []int64{0, 24 * mib, 48 * mib} {
		f.write(ctx, pm, func(s *lpmv1.PodMigrationStatus) {
			s.Target.BytesDone, s.Target.BytesTotal = done, 48*mib
		})
	}
}

// runToSuccess drives pm from creation to Succeeded, moving pod web from
// node-a to node-b with a downtime of 1.5s.
func (f *fakeController) runToSuccess(ctx context.Context, pm *lpmv1.PodMigration) {
	f.preflight(ctx, pm, "node-a", "node-b")
	f.checkpoint(ctx, pm)
	f.transfer(ctx, pm)
	f.write(ctx, pm, func(s *lpmv1.PodMigrationStatus) {
		s.TransferProgress = &lpmv1.TransferProgress{BytesDone: 48 * mib, BytesTotal: 48 * mib}
		setCondition(&s.Conditions, lpmv1.ConditionImagesReady, metav1.ConditionTrue, lpmv1.ReasonImagesReady, "")
		enterPhase(s, lpmv1.PhaseRestoring)
		s.RestoredPod = "web-restored"
	})
	f.write(ctx, pm, func(s *lpmv1.PodMigrationStatus) {
		setCondition(&s.Conditions, lpmv1.ConditionRestored, metav1.ConditionUnknown, lpmv1.ReasonSettling,
			"settling")
	})
	f.write(ctx, pm, func(s *lpmv1.PodMigrationStatus) {
		setCondition(&s.Conditions, lpmv1.ConditionRestored, metav1.ConditionTrue, lpmv1.ReasonVerified, "")
		setCondition(&s.Conditions, lpmv1.ConditionSourceRemoved, metav1.ConditionTrue, lpmv1.ReasonSourceDeleted, "")
		setCondition(&s.Conditions, lpmv1.ConditionSucceeded, metav1.ConditionTrue, lpmv1.ReasonMigrationComplete,
			"pod web runs on node node-b")
		s.Downtime = &metav1.Duration{Duration: 1500 * time.Millisecond}
		s.CompletionTime = &metav1.Time{Time: time.Now()}
		enterPhase(s, lpmv1.PhaseSucceeded)
	})
}

// failTransfer drives pm to PreparingImages and fails it there with
// TransferFailed, as the controller does when the target agent reports it.
func (f *fakeController) failTransfer(ctx context.Context, pm *lpmv1.PodMigration, message string) {
	f.preflight(ctx, pm, "node-a", "node-b")
	f.checkpoint(ctx, pm)
	f.write(ctx, pm, func(s *lpmv1.PodMigrationStatus) {
		setCondition(&s.Conditions, lpmv1.ConditionImagesReady, metav1.ConditionFalse, lpmv1.ReasonTransferFailed,
			message)
		setCondition(&s.Conditions, lpmv1.ConditionSucceeded, metav1.ConditionFalse, lpmv1.ReasonTransferFailed,
			message)
		s.CompletionTime = &metav1.Time{Time: time.Now()}
		enterPhase(s, lpmv1.PhaseFailed)
	})
}

// dryRun writes the outcome of a dry run: every check passes, or the agent
// of failRole ("source" or "target") fails its checks with reason and
// message.
func (f *fakeController) dryRun(ctx context.Context, pm *lpmv1.PodMigration, source, target, failRole string,
	reason lpmv1.Reason, message string) {
	f.write(ctx, pm, func(s *lpmv1.PodMigrationStatus) {
		enterPhase(s, lpmv1.PhasePending)
		s.SourceNode, s.TargetNode = source, target
		setCondition(&s.Conditions, lpmv1.ConditionPreflightPassed, metav1.ConditionUnknown,
			lpmv1.ReasonWaitingForAgents, "waiting for the agents")
	})
	f.write(ctx, pm, func(s *lpmv1.PodMigrationStatus) {
		s.Source = &lpmv1.SourceAgentStatus{}
		s.Target = &lpmv1.TargetAgentStatus{}
		sourceStatus, targetStatus := metav1.ConditionTrue, metav1.ConditionTrue
		sourceReason, targetReason := lpmv1.Reason("Prepared"), lpmv1.Reason("Prepared")
		sourceMessage, targetMessage := "", ""
		switch failRole {
		case "source":
			sourceStatus, sourceReason, sourceMessage = metav1.ConditionFalse, reason, message
		case "target":
			targetStatus, targetReason, targetMessage = metav1.ConditionFalse, reason, message
		}
		setCondition(&s.Source.Conditions, lpmv1.AgentConditionPrepared, sourceStatus, sourceReason, sourceMessage)
		setCondition(&s.Target.Conditions, lpmv1.AgentConditionPrepared, targetStatus, targetReason, targetMessage)
	})
	f.write(ctx, pm, func(s *lpmv1.PodMigrationStatus) {
		s.CompletionTime = &metav1.Time{Time: time.Now()}
		if failRole == "" {
			setCondition(&s.Conditions, lpmv1.ConditionPreflightPassed, metav1.ConditionTrue,
				lpmv1.ReasonChecksPassed, "pod can move")
			setCondition(&s.Conditions, lpmv1.ConditionSucceeded, metav1.ConditionTrue, lpmv1.ReasonDryRun,
				"dry run: every check passed")
			enterPhase(s, lpmv1.PhaseSucceeded)
			return
		}
		setCondition(&s.Conditions, lpmv1.ConditionPreflightPassed, metav1.ConditionFalse, reason,
			"status."+failRole+": "+message)
		setCondition(&s.Conditions, lpmv1.ConditionSucceeded, metav1.ConditionFalse, reason,
			"status."+failRole+": "+message)
		enterPhase(s, lpmv1.PhaseFailed)
	})
}

// failPreflight fails pm in Pending with a controller check's reason.
func (f *fakeController) failPreflight(ctx context.Context, pm *lpmv1.PodMigration, reason lpmv1.Reason,
	message string) {
	f.write(ctx, pm, func(s *lpmv1.PodMigrationStatus) {
		enterPhase(s, lpmv1.PhasePending)
		setCondition(&s.Conditions, lpmv1.ConditionPreflightPassed, metav1.ConditionFalse, reason, message)
		setCondition(&s.Conditions, lpmv1.ConditionSucceeded, metav1.ConditionFalse, reason, message)
		s.CompletionTime = &metav1.Time{Time: time.Now()}
		enterPhase(s, lpmv1.PhaseFailed)
	})
}
