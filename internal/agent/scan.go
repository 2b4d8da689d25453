package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/agent/procscan"
	"github.com/lpm-dev/lpm/internal/criuconfig"
)

// maxFindingsShown is how many findings of the process scan go into the
// Prepared condition's message.
const maxFindingsShown = 3

// scanProcesses reads every process of the pod's containers from /proc
// and rejects the migration, before anything touches the pod, when one
// holds an object the node's CRIU cannot dump or restore (step 2).
func (a *Agent) scanProcesses(ctx context.Context, pod *corev1.Pod, containers []podContainer) (lpmv1.Reason,
	error) {
	info, err := a.runtime.Info(ctx)
	if err != nil {
		return lpmv1.ReasonAgentCannotCheckpoint, err
	}
	var targets []procscan.Container
	for _, c := range containers {
		pid, err := a.runtime.TaskPID(ctx, c.id)
		if err != nil {
			return lpmv1.ReasonPodNotRunning, fmt.Errorf("container %s of pod %s: %w", c.name, pod.Name, err)
		}
		targets = append(targets, procscan.Container{Name: c.name, PID: int(pid),
			DevShmVolume: mountsDevShm(pod, c.name)})
	}
	scanner := procscan.Scanner{
		ProcRoot: a.opts.ProcRoot,
		// The agent's own /sys/fs/cgroup is its container's; containerd's
		// root shows the node's cgroup mount.
		CgroupRoot: filepath.Join(a.opts.ProcRoot, strconv.FormatUint(info.Pid, 10), "root", "sys", "fs", "cgroup"),
		Policy:     a.scanPolicy(ctx),
	}

	start := a.clock.Now()
	result, err := scanner.Scan(targets)
	if err != nil {
		return lpmv1.ReasonInternalError, err
	}
	logf.FromContext(ctx).V(1).Info("Scanned the pod's processes", "pod", pod.Name, "processes", result.Processes,
		"fileDescriptors", result.FileDescriptors, "findings", len(result.Findings),
		"duration", a.clock.Since(start).String(), "criuVersion", scanner.Policy.CRIUVersion)
	if len(result.Findings) == 0 {
		return "", nil
	}
	return result.Findings[0].Reason, errors.New(result.Message(maxFindingsShown))
}

// scanPolicy returns what this node's CRIU handles, from the capabilities
// the agent published: its version, and the ghost-file limit and tcp-close
// of its configuration. Without them every rule applies.
func (a *Agent) scanPolicy(ctx context.Context) procscan.Policy {
	caps := a.nodeCapabilities(ctx)
	if caps == nil {
		logf.FromContext(ctx).Info("No published capabilities; the process scan applies every rule",
			"nodeAgent", a.opts.NodeName)
		return procscan.Policy{}
	}
	policy := procscan.NewPolicy(caps.CRIUVersion, criuconfig.GhostLimit(caps.CRIUConfig))
	policy.TCPClose = criuconfig.ClosesTCP(caps.CRIUConfig)
	return policy
}

// nodeCapabilities returns the capabilities this agent published for its
// node, nil when it published none yet.
func (a *Agent) nodeCapabilities(ctx context.Context) *lpmv1.NodeCapabilities {
	na := &lpmv1.NodeAgent{}
	if err := a.client.Get(ctx, types.NamespacedName{Name: a.opts.NodeName}, na); err != nil {
		return nil
	}
	return na.Status.Capabilities
}

// mountsDevShm reports whether the pod's container name mounts a volume at
// /dev/shm or at a directory above it.
func mountsDevShm(pod *corev1.Pod, name string) bool {
	for _, c := range pod.Spec.Containers {
		if c.Name != name {
			continue
		}
		for _, m := range c.VolumeMounts {
			dir := filepath.Clean(m.MountPath)
			if dir == "/dev/shm" || dir == "/dev" {
				return true
			}
		}
	}
	return false
}

// sandboxShmFiles describes the files in the pod sandbox's /dev/shm, which
// stay behind: the restored pod gets an empty one. The process scan has
// rejected the pod if a process holds one of them. It returns "" when
// there are none or when every container mounts a volume at /dev/shm.
func (a *Agent) sandboxShmFiles(ctx context.Context, pod *corev1.Pod, containers []podContainer) string {
	for _, c := range containers {
		if mountsDevShm(pod, c.name) {
			continue
		}
		pid, err := a.runtime.TaskPID(ctx, c.id)
		if err != nil {
			return ""
		}
		dir := filepath.Join(a.opts.ProcRoot, strconv.Itoa(int(pid)), "root", "dev", "shm")
		files, size := 0, int64(0)
		err = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			files++
			if info, err := d.Info(); err == nil {
				size += info.Size()
			}
			return nil
		})
		if err != nil {
			logf.FromContext(ctx).V(1).Info("Failed to list the pod's /dev/shm", "pod", pod.Name,
				"container", c.name, "error", err.Error())
			return ""
		}
		if files == 0 {
			return ""
		}
		return fmt.Sprintf("its /dev/shm holds %s (%d bytes) that stay behind, because the restored pod "+
			"gets an empty /dev/shm", counted(files, "file"), size)
	}
	return ""
}
