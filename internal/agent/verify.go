package agent

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/agent/capabilities"
	"github.com/lpm-dev/lpm/internal/agent/procscan"
	"github.com/lpm-dev/lpm/internal/agent/restorecheck"
)

// proveRestore checks the restored pod's containers before the target
// agent reports them restored: each restored process lives in the new
// pod's cgroup, and no CRIU network lock remains in the pod's network
// namespace. It runs for every restore, on another node or on the same
// one (sourcePolicy Keep).
func (a *Agent) proveRestore(ctx context.Context, containers []lpmv1.TargetContainerStatus) (lpmv1.Reason,
	error) {
	if len(containers) == 0 {
		return "", nil
	}
	sandboxPID, err := a.sandboxPID(ctx, containers[0].ContainerID)
	if err != nil {
		return lpmv1.ReasonRestoreCheckFailed, err
	}
	sandbox, err := restorecheck.ReadCgroups(a.opts.ProcRoot, sandboxPID)
	if err != nil {
		return lpmv1.ReasonRestoreCheckFailed, err
	}
	pod := restorecheck.PodCgroups(sandbox)

	for _, c := range containers {
		pid, err := a.runtime.TaskPID(ctx, c.ContainerID)
		if err != nil {
			return lpmv1.ReasonRestoreCheckFailed, fmt.Errorf("container %s: %w", c.Name, err)
		}
		pids, err := procscan.Tree(a.opts.ProcRoot, int(pid))
		if err != nil {
			return lpmv1.ReasonRestoreCheckFailed, fmt.Errorf("container %s: %w", c.Name, err)
		}
		for _, p := range pids {
			cgroups, err := restorecheck.ReadCgroups(a.opts.ProcRoot, p)
			if err != nil {
				// The process exited since the tree was read.
				continue
			}
			if misplaced := restorecheck.CheckCgroups(p, cgroups, pod); len(misplaced) > 0 {
				return lpmv1.ReasonProcessOutsidePodCgroup, fmt.Errorf("container %s: %s", c.Name,
					misplaced[0].String())
			}
		}
	}

	info, err := a.runtime.Info(ctx)
	if err != nil {
		return lpmv1.ReasonRestoreCheckFailed, err
	}
	root, path, err := capabilities.Host{ProcRoot: a.opts.ProcRoot}.RuntimeRoot(info)
	if err != nil {
		return lpmv1.ReasonRestoreCheckFailed, err
	}
	netns := filepath.Join(a.opts.ProcRoot, strconv.Itoa(sandboxPID), "ns", "net")
	locks, err := restorecheck.Tools{Root: root, Path: path}.NetworkLocks(ctx, netns)
	if err != nil {
		return lpmv1.ReasonRestoreCheckFailed, err
	}
	if len(locks) > 0 {
		return lpmv1.ReasonNetworkLockLeft, fmt.Errorf("the restored pod's network namespace still holds "+
			"CRIU's network lock (%s), which drops its traffic", strings.Join(locks, ", "))
	}
	return "", nil
}

// sandboxPID returns the process ID of the sandbox of a container's pod.
func (a *Agent) sandboxPID(ctx context.Context, containerID string) (int, error) {
	resp, err := a.runtime.CRI().ListContainers(ctx, &runtimeapi.ListContainersRequest{
		Filter: &runtimeapi.ContainerFilter{Id: containerID}})
	if err != nil {
		return 0, fmt.Errorf("failed to list container %s: %w", containerID, err)
	}
	if len(resp.GetContainers()) == 0 {
		return 0, fmt.Errorf("container %s not found", containerID)
	}
	sandbox := resp.GetContainers()[0].GetPodSandboxId()
	pid, err := a.runtime.TaskPID(ctx, sandbox)
	if err != nil {
		return 0, fmt.Errorf("failed to find the process of pod sandbox %s: %w", sandbox, err)
	}
	if pid == 0 {
		return 0, errors.New("pod sandbox " + sandbox + " has no process")
	}
	return int(pid), nil
}

// restoreFailure reports a container of the restored pod whose restore
// failed in the runtime: its waiting or last termination message names
// CRIU's log. The log is kept on this node, and its error lines and
// location go into the Restored condition.
func (a *Agent) restoreFailure(ctx context.Context, pm *lpmv1.PodMigration,
	statuses map[string]corev1.ContainerStatus) (bool, error) {
	if isFalse(targetCondition(pm, lpmv1.AgentConditionRestored)) {
		return true, nil
	}
	for _, c := range pm.Status.Target.Containers {
		s, ok := statuses[c.Name]
		if !ok {
			continue
		}
		msg := ""
		switch {
		case s.State.Waiting != nil:
			msg = s.State.Waiting.Message
		case s.LastTerminationState.Terminated != nil:
			msg = s.LastTerminationState.Terminated.Message
		}
		if restorecheck.LogFileFromError(msg) == "" {
			continue
		}
		dir, lines := a.keepRuntimeLog(ctx, string(pm.UID), c.Name, "restore", msg)
		if dir != "" {
			if err := a.patchTarget(ctx, pm, func(s *lpmv1.TargetAgentStatus) { s.LogPath = dir }); err != nil {
				return true, err
			}
		}
		err := withCRIUErrors(fmt.Errorf("the runtime failed to restore container %s: %s", c.Name, msg),
			a.opts.NodeName, dir, lines)
		return true, a.failTarget(ctx, pm, lpmv1.AgentConditionRestored, lpmv1.ReasonRestoredPodFailed, err)
	}
	return false, nil
}
