// Package downtime measures how long a pod holding N MiB of random memory
// is unavailable while it moves between the lab's two nodes, by lpm and by
// the runtime's own paths:
//
//   - Migrate: a PodMigration from node-a to node-b, cut to restored pod
//     Ready, split into stages by containerd's events and file events on
//     both nodes;
//   - RuntimeFloor: the kubelet checkpoint call plus the restored pod's
//     create to Running, with the checkpoint image already on the target;
//   - CRIUFloor: `runc checkpoint` and `runc restore` of the same process on
//     one node, with the node's CRIU, images in memory (tmpfs);
//   - PageServer: the same process moved to the other node with CRIU's page
//     server streaming the pages during the dump, a prototype of a path
//     below the runtime floor.
package downtime

import (
	"context"
	"fmt"
	"time"

	"github.com/lpm-dev/lpm/lab/node"
	"github.com/lpm-dev/lpm/test/bench/benchlab"
	"github.com/lpm-dev/lpm/test/bench/results"
)

// Paths inside a node that the stage marks come from.
const (
	checkpointsDir = "/var/lib/kubelet/checkpoints"
	ingestDir      = "/var/lib/containerd/io.containerd.content.v1.content/ingest"
	criContainers  = "/var/lib/containerd/io.containerd.grpc.v1.cri/containers"
	taskBundles    = "/run/containerd/io.containerd.runtime.v2.task/k8s.io"
	nodeTmp        = "/tmp"
)

// Runner runs the measurements against one lab.
type Runner struct {
	Lab *benchlab.Lab
	Log func(format string, args ...any)
	// Load returns the one-minute load average, recorded with each run.
	Load func() float64
}

// sourceWatches are the directories of the source node whose file events
// split the kubelet's checkpoint call: the archive written by the runtime,
// CRIU's image directory in /tmp, the content store's ingests.
func sourceWatches(n *node.Node, containerID string) []benchlab.Watch {
	w := []benchlab.Watch{
		{Node: n, Path: checkpointsDir, Label: "archive"},
		{Node: n, Path: nodeTmp, Label: "tmp"},
		{Node: n, Path: ingestDir, Label: "ingest"},
	}
	if containerID != "" {
		w = append(w, benchlab.Watch{Node: n, Path: criContainers + "/" + containerID, Label: "ctr",
			Children: true})
	}
	return w
}

// targetWatches are the directories of the target node whose file events
// split the import and the restore: the content store's ingests, the CRI
// containers' directories (the restore copy goes to <id>/ctrd-restore) and
// the task bundles (a bundle appears when the restore itself starts).
func targetWatches(n *node.Node) []benchlab.Watch {
	return []benchlab.Watch{
		{Node: n, Path: ingestDir, Label: "ingest"},
		{Node: n, Path: criContainers, Label: "containers", Children: true},
		{Node: n, Path: taskBundles, Label: "bundles"},
	}
}

// restorePoints are the stages from the restored pod's creation to its
// container's start, the same for lpm and for the runtime floor.
func restorePoints(target, containerID string) []benchlab.Point {
	return []benchlab.Point{
		// containerd creates the container's record, then copies the
		// image into its ctrd-restore directory.
		{Stage: "sandbox", Match: benchlab.On(target, "/containers/create", containerID)},
		{Stage: "restore copy", Match: benchlab.On(target, "create:bundles", containerID)},
		{Stage: "CRIU restore", Match: benchlab.On(target, "/tasks/start", containerID)},
	}
}

// startPod creates a randmem pod on the source node and waits until it is
// Ready, and returns its container's ID.
func (r *Runner) startPod(ctx context.Context, pods *benchlab.PodWatcher, name string, mib int) (string, error) {
	pod := benchlab.RandmemPod(name, r.Lab.Source.Name(), mib)
	if err := r.Lab.Clients.Client.Create(ctx, pod); err != nil {
		return "", fmt.Errorf("failed to create pod %s: %w", name, err)
	}
	times, err := pods.WaitReady(ctx, name, 5*time.Minute)
	if err != nil {
		return "", err
	}
	if times.ContainerID == "" {
		return "", fmt.Errorf("pod %s is Ready without a container ID", name)
	}
	return times.ContainerID, nil
}

func (r *Runner) newRun(mib, index int) results.Run {
	run := results.Run{SizeMiB: mib, Index: index, Stages: map[string]float64{}, Values: map[string]float64{},
		Detail: map[string]any{}}
	if r.Load != nil {
		run.Load = r.Load()
	}
	return run
}

func (r *Runner) logf(format string, args ...any) {
	if r.Log != nil {
		r.Log(format, args...)
	}
}

// marksDetail keeps the marks of a run that a reader may want to check,
// leaving out the many events of unrelated containers.
func marksDetail(marks []benchlab.Mark, since time.Time) []string {
	var out []string
	for _, m := range marks {
		if m.Time.Before(since) {
			continue
		}
		out = append(out, fmt.Sprintf("%+.3fs %s %s %s", m.Time.Sub(since).Seconds(), m.Node, m.Kind, m.Subject))
	}
	if len(out) > 400 {
		out = out[:400]
	}
	return out
}
