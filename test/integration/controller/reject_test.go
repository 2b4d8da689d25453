package controller_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/test/fakeagent"
)

// Every input lpm cannot move is rejected with a reason that names the
// field, before anything touches the source pod.
func TestRejectedInputs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	src, dst := h.nodes[0], h.nodes[1]
	notReady := h.extraNode("not-ready", func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionFalse })
	cordoned := h.extraNode("cordoned", func(n *corev1.Node) { n.Spec.Unschedulable = true })
	tainted := h.extraNode("tainted", func(n *corev1.Node) {
		n.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}}
	})
	small := h.extraNode("small", func(n *corev1.Node) {
		n.Status.Allocatable[corev1.ResourceCPU] = resource.MustParse("50m")
	})
	noRestore := h.extraNode("no-restore", nil)
	h.publishAgent(noRestore, func(s *lpmv1.NodeAgentStatus) {
		s.Conditions[2].Status = metav1.ConditionFalse
		s.Conditions[2].Reason = "RestoreDisabled"
		s.Conditions[2].Message = "enable_experimental_restore_via_create is false"
	})
	for _, n := range []string{notReady, cordoned, tainted, small} {
		h.publishAgent(n, nil)
	}

	manual := func(phase corev1.PodPhase) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Annotations = map[string]string{fakeagent.ManualStatusAnnotation: "true"}
			p.Status.Phase = phase
		}
	}
	owned := func(apiVersion, kind string) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{
				APIVersion: apiVersion, Kind: kind, Name: "owner", UID: "0b0b0b0b-0000-4000-8000-000000000001",
				Controller: ptr.To(true),
			}}
		}
	}
	volume := func(source corev1.VolumeSource) func(*corev1.Pod) {
		return func(p *corev1.Pod) { p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: source}} }
	}
	testCases := []struct {
		name       string
		pod        func(*corev1.Pod)
		noPod      bool
		terminate  bool
		target     string
		migration  func(*lpmv1.PodMigration)
		wantReason lpmv1.Reason
		wantField  string
	}{
		{name: "missing pod", noPod: true, wantReason: lpmv1.ReasonPodNotFound, wantField: "spec.podName"},
		{
			name: "pending pod", pod: manual(corev1.PodPending),
			wantReason: lpmv1.ReasonPodNotRunning, wantField: "status.phase",
		},
		{
			name: "succeeded pod", pod: manual(corev1.PodSucceeded),
			wantReason: lpmv1.ReasonPodNotRunning, wantField: "status.phase",
		},
		{
			name: "terminating pod", terminate: true,
			wantReason: lpmv1.ReasonPodTerminating, wantField: "metadata.deletionTimestamp",
		},
		{
			name: "unknown target", target: "no-such-node",
			wantReason: lpmv1.ReasonTargetNotFound, wantField: "spec.targetNode",
		},
		{
			name: "not ready target", target: notReady,
			wantReason: lpmv1.ReasonTargetNotReady, wantField: "spec.targetNode",
		},
		{
			name: "cordoned target", target: cordoned,
			wantReason: lpmv1.ReasonTargetUnschedulable, wantField: "spec.targetNode",
		},
		{name: "target is source", target: src, wantReason: lpmv1.ReasonTargetIsSource, wantField: "spec.targetNode"},
		{
			name: "target without room", target: small,
			wantReason: lpmv1.ReasonTargetInsufficient, wantField: "spec.containers[*].resources.requests[cpu]",
		},
		{
			name: "untolerated taint", target: tainted,
			wantReason: lpmv1.ReasonTargetTaint, wantField: "spec.tolerations",
		},
		{
			name: "target cannot restore", target: noRestore,
			wantReason: lpmv1.ReasonAgentCannotRestore, wantField: "spec.targetNode",
		},
		{
			name: "replicaset pod", pod: owned("apps/v1", "ReplicaSet"),
			wantReason: lpmv1.ReasonControllerOwnedPod, wantField: "metadata.ownerReferences[0]",
		},
		{
			name: "statefulset pod", pod: owned("apps/v1", "StatefulSet"),
			wantReason: lpmv1.ReasonControllerOwnedPod, wantField: "metadata.ownerReferences[0]",
		},
		{
			name: "daemonset pod", pod: owned("apps/v1", "DaemonSet"),
			wantReason: lpmv1.ReasonControllerOwnedPod, wantField: "metadata.ownerReferences[0]",
		},
		{
			name: "job pod", pod: owned("batch/v1", "Job"),
			wantReason: lpmv1.ReasonControllerOwnedPod, wantField: "metadata.ownerReferences[0]",
		},
		{
			name: "static pod",
			pod: func(p *corev1.Pod) {
				p.Annotations = map[string]string{"kubernetes.io/config.mirror": "x"}
			},
			wantReason: lpmv1.ReasonStaticPod, wantField: "metadata.annotations[kubernetes.io/config.mirror]",
		},
		{
			name: "host path", pod: volume(corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/srv"}}),
			wantReason: lpmv1.ReasonUnsupportedVolume, wantField: "spec.volumes[0].hostPath",
		},
		{
			name: "persistent volume claim",
			pod: volume(corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"},
			}),
			wantReason: lpmv1.ReasonUnsupportedVolume, wantField: "spec.volumes[0].persistentVolumeClaim",
		},
		{
			name: "extended resource",
			pod: func(p *corev1.Pod) {
				gpu := corev1.ResourceList{"example.com/gpu": resource.MustParse("1")}
				p.Spec.Containers[0].Resources.Requests["example.com/gpu"] = gpu["example.com/gpu"]
				p.Spec.Containers[0].Resources.Limits = gpu
			},
			wantReason: lpmv1.ReasonUnsupportedResource,
		},
		{
			name: "device claim",
			pod: func(p *corev1.Pod) {
				p.Spec.ResourceClaims = []corev1.PodResourceClaim{{Name: "gpu", ResourceClaimName: ptr.To("gpu")}}
			},
			wantReason: lpmv1.ReasonUnsupportedResource, wantField: "spec.resourceClaims",
		},
		{
			name: "host network", pod: func(p *corev1.Pod) { p.Spec.HostNetwork = true },
			wantReason: lpmv1.ReasonHostNamespace, wantField: "spec.hostNetwork",
		},
		{
			name: "host pid", pod: func(p *corev1.Pod) { p.Spec.HostPID = true },
			wantReason: lpmv1.ReasonHostNamespace, wantField: "spec.hostPID",
		},
		{
			name: "host ipc", pod: func(p *corev1.Pod) { p.Spec.HostIPC = true },
			wantReason: lpmv1.ReasonHostNamespace, wantField: "spec.hostIPC",
		},
		{
			name: "user namespace", pod: func(p *corev1.Pod) { p.Spec.HostUsers = ptr.To(false) },
			wantReason: lpmv1.ReasonUserNamespace, wantField: "spec.hostUsers",
		},
		{
			name: "non-root without CAP_SYS_RESOURCE",
			pod: func(p *corev1.Pod) {
				p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000)}
			},
			wantReason: lpmv1.ReasonNonRootUnsupported, wantField: "spec.securityContext.runAsUser",
		},
	}
	for i, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			podName := "pod-" + strings.ReplaceAll(tc.name, " ", "-")
			podName = strings.ToLower(strings.NewReplacer("_", "-").Replace(podName))
			var before *corev1.Pod
			if !tc.noPod {
				before = h.createRunningPod(podName, src, func(p *corev1.Pod) {
					p.Spec.Containers[0].Resources.Limits = nil
					if tc.pod != nil {
						tc.pod(p)
					}
				})
				if tc.pod != nil && before.Annotations[fakeagent.ManualStatusAnnotation] != "" {
					status := before.Status
					h.must(admin.Get(h.ctx, client.ObjectKeyFromObject(before), before))
					before.Status = status
					h.must(admin.Status().Update(h.ctx, before))
				}
				if tc.terminate {
					h.terminate(before)
				}
				h.must(admin.Get(h.ctx, client.ObjectKeyFromObject(before), before))
			}
			target := tc.target
			if target == "" {
				target = dst
			}
			name := "reject-" + string(rune('a'+i))

			h.migrate(name, podName, target, tc.migration)
			m := h.waitFailed(name, tc.wantReason)

			c := condition(m, lpmv1.ConditionPreflightPassed)
			if c == nil || c.Status != metav1.ConditionFalse || c.Reason != string(tc.wantReason) {
				t.Errorf("PreflightPassed = %+v, want False/%s", c, tc.wantReason)
			}
			if tc.wantField != "" && !strings.HasPrefix(c.Message, tc.wantField+": ") {
				t.Errorf("message %q does not start with the field %s", c.Message, tc.wantField)
			}
			if before != nil {
				h.assertSourceUntouched(before)
			}
			h.waitFor("finalizer removed", func() bool { return len(h.get(name).Finalizers) == 0 })
			if len(h.restoredPods(m)) != 0 {
				t.Errorf("a rejected migration created a pod")
			}
		})
	}
	if n := h.agent.Count(fakeagent.StepCheckpoint); n != 0 {
		t.Errorf("%d checkpoints for rejected migrations, want none", n)
	}
}

// The API server itself rejects specs lpm could never run: edits after
// creation, timeouts out of bounds and over-long names.
func TestRejectedByAPIServer(t *testing.T) {
	t.Parallel()
	ns := fmt.Sprintf("api-validation-%d", testID.Add(1))
	h := &harness{t: t, ctx: t.Context(), ns: ns}
	h.must(admin.Create(h.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	base := func() *lpmv1.PodMigration {
		return &lpmv1.PodMigration{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "pm-", Namespace: ns},
			Spec:       lpmv1.PodMigrationSpec{PodName: "web", TargetNode: "node-b"},
		}
	}
	d := func(v time.Duration) *metav1.Duration { return &metav1.Duration{Duration: v} }
	testCases := []struct {
		name    string
		mutate  func(*lpmv1.PodMigration)
		wantErr string
	}{
		{name: "negative checkpoint timeout", mutate: func(m *lpmv1.PodMigration) {
			m.Spec.Timeouts = &lpmv1.Timeouts{Checkpoint: d(-time.Second)}
		}, wantErr: "spec.timeouts.checkpoint"},
		{name: "absurd checkpoint timeout", mutate: func(m *lpmv1.PodMigration) {
			m.Spec.Timeouts = &lpmv1.Timeouts{Checkpoint: d(100 * time.Hour)}
		}, wantErr: "checkpoint timeout must be between 1s and 1h"},
		{name: "zero restore timeout", mutate: func(m *lpmv1.PodMigration) {
			m.Spec.Timeouts = &lpmv1.Timeouts{Restore: d(0)}
		}, wantErr: "restore timeout must be between 1s and 1h"},
		{name: "absurd overall timeout", mutate: func(m *lpmv1.PodMigration) {
			m.Spec.Timeouts = &lpmv1.Timeouts{Overall: d(24 * time.Hour)}
		}, wantErr: "overall timeout must be between 1s and 12h"},
		{name: "absurd transfer timeout", mutate: func(m *lpmv1.PodMigration) {
			m.Spec.Timeouts = &lpmv1.Timeouts{Transfer: d(7 * time.Hour)}
		}, wantErr: "transfer timeout must be between 1s and 6h"},
		{name: "long settle", mutate: func(m *lpmv1.PodMigration) { m.Spec.Settle = d(11 * time.Minute) },
			wantErr: "settle must be between 0s and 10m"},
		{name: "over-long pod name", mutate: func(m *lpmv1.PodMigration) { m.Spec.PodName = strings.Repeat("a", 254) },
			wantErr: "spec.podName"},
		{name: "invalid pod name", mutate: func(m *lpmv1.PodMigration) { m.Spec.PodName = "Web_1" },
			wantErr: "spec.podName"},
		{name: "missing pod name", mutate: func(m *lpmv1.PodMigration) { m.Spec.PodName = "" },
			wantErr: "spec.podName"},
		{name: "over-long target", mutate: func(m *lpmv1.PodMigration) { m.Spec.TargetNode = strings.Repeat("b", 254) },
			wantErr: "spec.targetNode"},
		{name: "registry without repository", mutate: func(m *lpmv1.PodMigration) {
			m.Spec.Transfer = &lpmv1.Transfer{Mode: lpmv1.TransferModeRegistry}
		}, wantErr: "transfer.registry is required when transfer.mode is Registry"},
		{name: "repository without a registry host", mutate: func(m *lpmv1.PodMigration) {
			m.Spec.Transfer = &lpmv1.Transfer{Mode: lpmv1.TransferModeRegistry,
				Registry: &lpmv1.RegistryTransfer{Repository: "team/checkpoints"}}
		}, wantErr: "repository must start with the registry's host"},
		{name: "unknown source policy", mutate: func(m *lpmv1.PodMigration) { m.Spec.SourcePolicy = "Move" },
			wantErr: "spec.sourcePolicy"},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			m := base()
			tc.mutate(m)
			err := admin.Create(h.ctx, m)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Create() error = %v, want one that contains %q", err, tc.wantErr)
			}
		})
	}

	t.Run("spec edited after creation", func(t *testing.T) {
		m := base()
		h.must(admin.Create(h.ctx, m))
		m.Spec.TargetNode = "node-c"
		err := admin.Update(h.ctx, m)
		if err == nil || !strings.Contains(err.Error(), "spec is immutable") {
			t.Errorf("Update() error = %v, want spec is immutable", err)
		}
	})
}

// extraNode creates one more node for the story, outside the fake agent's
// nodes, and returns its name.
func (h *harness) extraNode(suffix string, mutate func(*corev1.Node)) string {
	h.t.Helper()
	name := h.nodes[0][:strings.LastIndex(h.nodes[0], "-")] + "-" + suffix
	h.createNode(name)
	if mutate == nil {
		return name
	}
	node := &corev1.Node{}
	h.must(admin.Get(h.ctx, client.ObjectKey{Name: name}, node))
	mutate(node)
	h.must(admin.Update(h.ctx, node))
	h.must(admin.Get(h.ctx, client.ObjectKey{Name: name}, node))
	mutate(node)
	h.must(admin.Status().Update(h.ctx, node))
	return name
}

// publishAgent publishes a NodeAgent for a node outside the fake agent's.
func (h *harness) publishAgent(node string, mutate func(*lpmv1.NodeAgentStatus)) {
	h.t.Helper()
	other := fakeagent.New(admin, admin, h.clock, node)
	h.must(other.PublishNodeAgent(h.ctx, node, mutate))
}

// terminate starts the deletion of a pod that a finalizer keeps, so it
// stays terminating.
func (h *harness) terminate(pod *corev1.Pod) {
	h.t.Helper()
	h.must(admin.Get(h.ctx, client.ObjectKeyFromObject(pod), pod))
	pod.Finalizers = append(pod.Finalizers, "story.lpm.dev/keep")
	h.must(admin.Update(h.ctx, pod))
	h.must(admin.Delete(h.ctx, pod))
	h.t.Cleanup(func() {
		p := &corev1.Pod{}
		if admin.Get(h.ctx, client.ObjectKeyFromObject(pod), p) == nil {
			p.Finalizers = nil
			_ = admin.Update(h.ctx, p)
		}
	})
}
