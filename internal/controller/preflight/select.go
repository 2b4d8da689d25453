package preflight

import (
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// Cluster is the part of the cluster that target selection reads.
type Cluster struct {
	// Nodes are the candidate nodes.
	Nodes []corev1.Node
	// PodsByNode lists the pods bound to each node.
	PodsByNode map[string][]corev1.Pod
	// Agents maps a node's name to its NodeAgent.
	Agents map[string]*lpmv1.NodeAgent
}

// CheckTarget runs every check on one target node: the scheduler's rules,
// its agent's ability to restore and its compatibility with the source.
func CheckTarget(pod *corev1.Pod, node *corev1.Node, c *Cluster, now time.Time) *Failure {
	if f := CheckTargetNode(pod, node, c.PodsByNode[node.Name]); f != nil {
		return f
	}
	agent := c.Agents[node.Name]
	if f := CheckAgent(agent, node.Name, RoleTarget, now); f != nil {
		return f
	}
	if f := CheckCompatible(c.Agents[pod.Spec.NodeName], agent); f != nil {
		return f
	}
	return CheckCRIUCompatible(c.Agents[pod.Spec.NodeName], agent)
}

// SelectTarget picks the node to move the pod to when the PodMigration
// names none. Among the nodes other than the source that pass CheckTarget,
// it picks the one with the largest share of free memory, then of free
// CPU, as the scheduler's least-allocated scoring does. The name breaks
// ties. The failure lists why each node was rejected.
func SelectTarget(pod *corev1.Pod, c *Cluster, now time.Time) (string, *Failure) {
	type candidate struct {
		name             string
		memFree, cpuFree float64
	}
	var fits []candidate
	var rejected []string
	for i := range c.Nodes {
		node := &c.Nodes[i]
		if node.Name == pod.Spec.NodeName {
			continue
		}
		if f := CheckTarget(pod, node, c, now); f != nil {
			rejected = append(rejected, fmt.Sprintf("%s: %s", node.Name, f.Reason))
			continue
		}
		free := FreeResources(node, c.PodsByNode[node.Name])
		fits = append(fits, candidate{
			name:    node.Name,
			memFree: share(free, node.Status.Allocatable, corev1.ResourceMemory),
			cpuFree: share(free, node.Status.Allocatable, corev1.ResourceCPU),
		})
	}
	if len(fits) == 0 {
		detail := "no other node exists"
		if len(rejected) > 0 {
			const shown = 10
			sort.Strings(rejected)
			detail = strings.Join(rejected[:min(len(rejected), shown)], ", ")
			if len(rejected) > shown {
				detail += fmt.Sprintf(" and %d more", len(rejected)-shown)
			}
		}
		return "", fail(lpmv1.ReasonNoTargetNode, "spec.targetNode",
			"no node can take pod %s (%s). Name a node in spec.targetNode to see the full reason", pod.Name, detail)
	}
	sort.Slice(fits, func(i, j int) bool {
		a, b := fits[i], fits[j]
		if a.memFree != b.memFree {
			return a.memFree > b.memFree
		}
		if a.cpuFree != b.cpuFree {
			return a.cpuFree > b.cpuFree
		}
		return a.name < b.name
	})
	return fits[0].name, nil
}

func share(free, allocatable corev1.ResourceList, name corev1.ResourceName) float64 {
	total := allocatable[name]
	if total.IsZero() {
		return 0
	}
	left := free[name]
	return float64(left.MilliValue()) / float64(total.MilliValue())
}
