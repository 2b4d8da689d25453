package agent

import (
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Kubelet probe defaults (k8s.io/api/core/v1 Probe).
const (
	defaultProbePeriod    = 10 * time.Second
	defaultProbeTimeout   = 1 * time.Second
	defaultProbeThreshold = 3
)

// freezeBudget returns how long the pod's containers can stay frozen
// before the kubelet may kill one of them for failed liveness probes, and
// false when nothing limits it.
//
// A frozen process cannot answer an HTTP or gRPC probe, so each such probe
// fails after its timeout; the kubelet kills the container after
// failureThreshold consecutive failures. The earliest kill comes when a
// probe starts right at the freeze: (failureThreshold-1) periods plus one
// timeout later. Exec probes do not count: containerd refuses to exec in a
// paused container, and the kubelet discards a probe that errors instead
// of failing. TCP probes succeed, because the kernel completes the
// handshake for a frozen listener.
func freezeBudget(pod *corev1.Pod, containers []string) (time.Duration, bool) {
	wanted := map[string]bool{}
	for _, name := range containers {
		wanted[name] = true
	}
	var budget time.Duration
	limited := false
	consider := func(c corev1.Container) {
		p := c.LivenessProbe
		if !wanted[c.Name] || p == nil || (p.HTTPGet == nil && p.GRPC == nil) {
			return
		}
		period := seconds(p.PeriodSeconds, defaultProbePeriod)
		timeout := seconds(p.TimeoutSeconds, defaultProbeTimeout)
		threshold := int(p.FailureThreshold)
		if threshold <= 0 {
			threshold = defaultProbeThreshold
		}
		b := time.Duration(threshold-1)*period + timeout
		if !limited || b < budget {
			budget, limited = b, true
		}
	}
	for _, c := range pod.Spec.InitContainers {
		consider(c)
	}
	for _, c := range pod.Spec.Containers {
		consider(c)
	}
	return budget, limited
}

func seconds(v int32, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return time.Duration(v) * time.Second
}

// freezeMargin is how long before the kubelet could kill a frozen source
// the agent fails the migration: the controller must see the failure and
// delete the restored pod before the source agent may thaw the source.
func freezeMargin(budget time.Duration) time.Duration {
	margin := budget / 4
	if margin < 5*time.Second {
		margin = 5 * time.Second
	}
	return margin
}
