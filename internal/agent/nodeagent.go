package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/agent/capabilities"
	"github.com/lpm-dev/lpm/internal/agent/runtime"
)

// Publisher keeps the node's NodeAgent current: a heartbeat, the transfer
// endpoint and certificate, and the node's capabilities.
type Publisher struct {
	// Client writes the NodeAgent; it needs no cache.
	Client client.Client
	// Runtime and Host are probed for capabilities.
	Runtime *runtime.Runtime
	Host    capabilities.Host
	// Kubelet, when set, is probed for its checkpoint API.
	Kubelet interface {
		ProbeCheckpointAPI(ctx context.Context) error
	}
	NodeName    string
	Endpoint    string
	Fingerprint string
	Version     string
	Clock       clock.Clock
	// Heartbeat is how often the NodeAgent is renewed; Probe how often the
	// capabilities are probed again.
	Heartbeat time.Duration
	Probe     time.Duration
	// RuntimeCheck is how often the runtime's process and CRIU
	// configuration are checked. A runtime that does not respond makes the
	// node unable to checkpoint or restore until it responds again. A
	// restarted runtime, whose configuration may have changed, and a
	// changed CRIU configuration are probed again at once.
	RuntimeCheck time.Duration
}

// NeedLeaderElection is false: every node publishes its own NodeAgent.
func (p *Publisher) NeedLeaderElection() bool { return false }

// Start publishes until ctx ends.
func (p *Publisher) Start(ctx context.Context) error {
	log := logf.FromContext(ctx).WithValues("nodeAgent", p.NodeName)
	if p.Heartbeat == 0 {
		p.Heartbeat = 30 * time.Second
	}
	if p.Probe == 0 {
		p.Probe = 5 * time.Minute
	}
	if p.RuntimeCheck == 0 || p.RuntimeCheck > p.Heartbeat {
		p.RuntimeCheck = min(5*time.Second, p.Heartbeat)
	}
	var (
		report                   *capabilities.Report
		lastProbe, lastPublished time.Time
		probed                   runtimeState
		probeFailed              bool
		// runtimeDown is why the runtime does not respond, empty while it responds.
		runtimeDown string
	)
	for {
		changed := false
		state, err := p.observeRuntime(ctx)
		switch {
		case err != nil && runtimeDown == "":
			log.Error(err, "The container runtime does not respond")
			runtimeDown, changed = err.Error(), true
		case err == nil && runtimeDown != "":
			log.Info("The container runtime responds again", "pid", state.pid)
			runtimeDown, changed = "", true
		}

		// A report is stale when it is missing or describes an earlier
		// runtime process or CRIU configuration. After a failed probe the
		// next one waits a heartbeat.
		stale := report == nil || state != probed
		retry := p.RuntimeCheck
		if probeFailed {
			retry = p.Heartbeat
		}
		if runtimeDown == "" && (p.Clock.Since(lastProbe) >= p.Probe || stale && p.Clock.Since(lastProbe) >= retry) {
			switch {
			case report != nil && state.pid != probed.pid:
				log.Info("The container runtime restarted; probing the node again", "pid", state.pid)
			case report != nil && state.criuConfig != probed.criuConfig:
				log.Info("The CRIU configuration changed; probing the node again")
			}
			r, err := p.probe(ctx)
			lastProbe, probeFailed = p.Clock.Now(), err != nil
			if err != nil {
				log.Error(err, "Failed to probe node capabilities")
			} else {
				report, probed, changed = r, state, true
			}
		}

		if changed || lastPublished.IsZero() || p.Clock.Since(lastPublished) >= p.Heartbeat {
			if err := p.Publish(ctx, withRuntimeDown(report, runtimeDown)); err != nil {
				log.Error(err, "Failed to publish NodeAgent")
			} else {
				lastPublished = p.Clock.Now()
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-p.Clock.After(p.RuntimeCheck):
		}
	}
}

// runtimeState identifies the parts of the node that the capabilities
// depend on and that change without notice: containerd's process and the
// CRIU configuration files in its root.
type runtimeState struct {
	pid        uint64
	criuConfig string
}

// maxCRIUConfigBytes bounds the part of a CRIU configuration file compared
// between two observations.
const maxCRIUConfigBytes = 64 << 10

// observeRuntime reads containerd's process ID and its CRIU configuration
// files. It fails while containerd does not respond.
func (p *Publisher) observeRuntime(ctx context.Context) (runtimeState, error) {
	pid, err := p.Runtime.ServerPID(ctx)
	if err != nil {
		return runtimeState{}, err
	}
	procRoot := p.Host.ProcRoot
	if procRoot == "" {
		procRoot = "/proc"
	}
	var config strings.Builder
	for _, path := range capabilities.CRIUConfigPaths {
		data, err := os.ReadFile(filepath.Join(procRoot, strconv.FormatUint(pid, 10), "root", path))
		if err != nil {
			continue
		}
		fmt.Fprintf(&config, "%s\n%s\n", path, data[:min(len(data), maxCRIUConfigBytes)])
	}
	return runtimeState{pid: pid, criuConfig: config.String()}, nil
}

// withRuntimeDown returns the report with a runtime that does not respond
// as a problem for both checkpoint and restore. The capabilities stay as
// last probed.
func withRuntimeDown(report *capabilities.Report, runtimeDown string) *capabilities.Report {
	if report == nil || runtimeDown == "" {
		return report
	}
	problem := "the container runtime does not respond: " + runtimeDown
	out := *report
	out.CheckpointProblems = append(slices.Clone(report.CheckpointProblems), problem)
	out.RestoreProblems = append(slices.Clone(report.RestoreProblems), problem)
	return &out
}

func (p *Publisher) probe(ctx context.Context) (*capabilities.Report, error) {
	probeCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	report, err := p.Host.Probe(probeCtx, p.Runtime)
	if err != nil {
		return nil, err
	}
	if p.Kubelet != nil {
		if err := p.Kubelet.ProbeCheckpointAPI(probeCtx); err != nil {
			report.CheckpointProblems = append(report.CheckpointProblems, "kubelet checkpoint API: "+err.Error())
		}
	}
	authorized, err := p.checkpointAuthorized(probeCtx)
	if err != nil {
		report.CheckpointProblems = append(report.CheckpointProblems, err.Error())
	}
	report.Capabilities.CheckpointAuthorized = authorized
	if !authorized && err == nil {
		report.CheckpointProblems = append(report.CheckpointProblems,
			"the agent's service account may not create nodes/checkpoint")
	}
	return report, nil
}

// checkpointAuthorized asks the API server whether the agent may create
// nodes/checkpoint on its node, which the kubelet requires.
func (p *Publisher) checkpointAuthorized(ctx context.Context) (bool, error) {
	review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "create", Resource: "nodes",
			Subresource: "checkpoint", Name: p.NodeName}}}
	if err := p.Client.Create(ctx, review); err != nil {
		return false, fmt.Errorf("failed to review the agent's permission for nodes/checkpoint: %w", err)
	}
	return review.Status.Allowed, nil
}

// Publish creates the NodeAgent when it is missing and writes its status.
func (p *Publisher) Publish(ctx context.Context, report *capabilities.Report) error {
	if err := p.ensureObject(ctx); err != nil {
		return err
	}
	now := metav1.NewTime(p.Clock.Now())
	status := lpmv1.NodeAgentStatus{
		HeartbeatTime:            &now,
		AgentVersion:             p.Version,
		Endpoint:                 p.Endpoint,
		ServingCertificateSHA256: p.Fingerprint,
		Conditions: []metav1.Condition{{Type: lpmv1.NodeAgentReady, Status: metav1.ConditionTrue,
			Reason: "AgentRunning", Message: "the agent runs and renews its heartbeat", LastTransitionTime: now}},
	}
	if report != nil {
		caps := report.Capabilities
		status.Capabilities = &caps
		status.Conditions = append(status.Conditions,
			supportCondition(lpmv1.NodeAgentCheckpointSupported, report.CheckpointProblems, now),
			supportCondition(lpmv1.NodeAgentRestoreSupported, report.RestoreProblems, now))
	}
	current := &lpmv1.NodeAgent{}
	if err := p.Client.Get(ctx, types.NamespacedName{Name: p.NodeName}, current); err != nil {
		return fmt.Errorf("failed to get NodeAgent %s: %w", p.NodeName, err)
	}
	// Keep transition times of conditions whose status did not change.
	for i := range status.Conditions {
		for _, old := range current.Status.Conditions {
			if old.Type == status.Conditions[i].Type && old.Status == status.Conditions[i].Status {
				status.Conditions[i].LastTransitionTime = old.LastTransitionTime
			}
		}
	}
	// The merge patch is computed against the current status, so it also
	// removes what the new status leaves out: a capability that turned
	// false or empty would otherwise keep its old value.
	desired := current.DeepCopy()
	desired.Status = status
	if err := p.Client.Status().Patch(ctx, desired, client.MergeFrom(current)); err != nil {
		return fmt.Errorf("failed to patch status of NodeAgent %s: %w", p.NodeName, err)
	}
	return nil
}

func supportCondition(condType string, problems []string, now metav1.Time) metav1.Condition {
	if len(problems) == 0 {
		return metav1.Condition{Type: condType, Status: metav1.ConditionTrue, Reason: "Supported",
			Message: "the node's runtime, CRIU and kernel support it", LastTransitionTime: now}
	}
	return metav1.Condition{Type: condType, Status: metav1.ConditionFalse, Reason: "Unsupported",
		Message: truncate(strings.Join(problems, "; "), 32768), LastTransitionTime: now}
}

// ensureObject creates the NodeAgent, owned by its Node so that it goes
// away with the node.
func (p *Publisher) ensureObject(ctx context.Context) error {
	na := &lpmv1.NodeAgent{}
	err := p.Client.Get(ctx, types.NamespacedName{Name: p.NodeName}, na)
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("failed to get NodeAgent %s: %w", p.NodeName, err)
	}
	node := &corev1.Node{}
	if err := p.Client.Get(ctx, types.NamespacedName{Name: p.NodeName}, node); err != nil {
		return fmt.Errorf("failed to get Node %s: %w", p.NodeName, err)
	}
	na = &lpmv1.NodeAgent{ObjectMeta: metav1.ObjectMeta{
		Name: p.NodeName,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name,
			UID: node.UID, BlockOwnerDeletion: ptr.To(false)}},
	}}
	if err := p.Client.Create(ctx, na); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("failed to create NodeAgent %s: %w", p.NodeName, err)
	}
	return nil
}
