package preflight

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

func runningPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"},
		Spec: corev1.PodSpec{
			NodeName: "node-a",
			Containers: []corev1.Container{{
				Name:  "app",
				Image: "registry.example/web:1",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU:    resource.MustParse("500m"),
					corev1.ResourceMemory: resource.MustParse("256Mi"),
				}},
			}},
			Volumes: []corev1.Volume{
				{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}},
				{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "tls"}}},
				{Name: "info", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{}}},
				{Name: "token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{}}},
			},
		},
		Status: corev1.PodStatus{
			Phase:      corev1.PodRunning,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
		},
	}
}

func TestCheckPod(t *testing.T) {
	testCases := []struct {
		name       string
		mutate     func(*corev1.Pod)
		wantReason lpmv1.Reason
		wantField  string
	}{
		{name: "movable pod"},
		{
			name:       "terminating",
			mutate:     func(p *corev1.Pod) { p.DeletionTimestamp = ptr.To(metav1.NewTime(time.Unix(1, 0))) },
			wantReason: lpmv1.ReasonPodTerminating, wantField: "metadata.deletionTimestamp",
		},
		{
			name:       "mirror pod",
			mutate:     func(p *corev1.Pod) { p.Annotations = map[string]string{mirrorPodAnnotation: "abc"} },
			wantReason: lpmv1.ReasonStaticPod, wantField: "metadata.annotations[kubernetes.io/config.mirror]",
		},
		{
			name:       "not scheduled",
			mutate:     func(p *corev1.Pod) { p.Spec.NodeName = "" },
			wantReason: lpmv1.ReasonPodNotScheduled, wantField: "spec.nodeName",
		},
		{
			name:       "pending",
			mutate:     func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending },
			wantReason: lpmv1.ReasonPodNotRunning, wantField: "status.phase",
		},
		{
			name:       "succeeded",
			mutate:     func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded },
			wantReason: lpmv1.ReasonPodNotRunning, wantField: "status.phase",
		},
		{
			name:       "not ready",
			mutate:     func(p *corev1.Pod) { p.Status.Conditions[0].Status = corev1.ConditionFalse },
			wantReason: lpmv1.ReasonPodNotReady, wantField: "status.conditions[Ready]",
		},
		{
			name:       "no ready condition",
			mutate:     func(p *corev1.Pod) { p.Status.Conditions = nil },
			wantReason: lpmv1.ReasonPodNotReady, wantField: "status.conditions[Ready]",
		},
		{
			name:       "replicaset owned",
			mutate:     ownedBy("apps/v1", "ReplicaSet"),
			wantReason: lpmv1.ReasonControllerOwnedPod, wantField: "metadata.ownerReferences[1]",
		},
		{
			name:       "statefulset owned",
			mutate:     ownedBy("apps/v1", "StatefulSet"),
			wantReason: lpmv1.ReasonControllerOwnedPod, wantField: "metadata.ownerReferences[1]",
		},
		{
			name:       "daemonset owned",
			mutate:     ownedBy("apps/v1", "DaemonSet"),
			wantReason: lpmv1.ReasonControllerOwnedPod, wantField: "metadata.ownerReferences[1]",
		},
		{
			name:       "job owned",
			mutate:     ownedBy("batch/v1", "Job"),
			wantReason: lpmv1.ReasonControllerOwnedPod, wantField: "metadata.ownerReferences[1]",
		},
		{
			name:       "restored pod of running migration",
			mutate:     ownedBy("lpm.dev/v1", "PodMigration"),
			wantReason: lpmv1.ReasonMigrationInProgress, wantField: "metadata.ownerReferences[1]",
		},
		{
			name: "non-controller owner allowed",
			mutate: func(p *corev1.Pod) {
				p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "x"}}
			},
		},
		{
			name:       "host network",
			mutate:     func(p *corev1.Pod) { p.Spec.HostNetwork = true },
			wantReason: lpmv1.ReasonHostNamespace, wantField: "spec.hostNetwork",
		},
		{
			name:       "host pid",
			mutate:     func(p *corev1.Pod) { p.Spec.HostPID = true },
			wantReason: lpmv1.ReasonHostNamespace, wantField: "spec.hostPID",
		},
		{
			name:       "host ipc",
			mutate:     func(p *corev1.Pod) { p.Spec.HostIPC = true },
			wantReason: lpmv1.ReasonHostNamespace, wantField: "spec.hostIPC",
		},
		{
			name:       "user namespace",
			mutate:     func(p *corev1.Pod) { p.Spec.HostUsers = ptr.To(false) },
			wantReason: lpmv1.ReasonUserNamespace, wantField: "spec.hostUsers",
		},
		{
			name:   "host users true allowed",
			mutate: func(p *corev1.Pod) { p.Spec.HostUsers = ptr.To(true) },
		},
		{
			name:       "host path volume",
			mutate:     addVolume(corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/data"}}),
			wantReason: lpmv1.ReasonUnsupportedVolume, wantField: "spec.volumes[5].hostPath",
		},
		{
			name: "persistent volume claim",
			mutate: addVolume(corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"},
			}),
			wantReason: lpmv1.ReasonUnsupportedVolume, wantField: "spec.volumes[5].persistentVolumeClaim",
		},
		{
			name:       "generic ephemeral volume",
			mutate:     addVolume(corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{}}),
			wantReason: lpmv1.ReasonUnsupportedVolume, wantField: "spec.volumes[5].ephemeral",
		},
		{
			name:       "network volume",
			mutate:     addVolume(corev1.VolumeSource{NFS: &corev1.NFSVolumeSource{Server: "nfs", Path: "/"}}),
			wantReason: lpmv1.ReasonUnsupportedVolume, wantField: "spec.volumes[5]",
		},
		{
			name:   "image volume allowed",
			mutate: addVolume(corev1.VolumeSource{Image: &corev1.ImageVolumeSource{Reference: "registry.example/data:1"}}),
		},
		{
			name: "extended resource",
			mutate: func(p *corev1.Pod) {
				p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{"example.com/gpu": resource.MustParse("1")}
			},
			wantReason: lpmv1.ReasonUnsupportedResource,
			wantField:  "spec.containers[0].resources.limits[example.com/gpu]",
		},
		{
			name: "hugepages",
			mutate: func(p *corev1.Pod) {
				p.Spec.Containers[0].Resources.Requests["hugepages-2Mi"] = resource.MustParse("4Mi")
			},
			wantReason: lpmv1.ReasonUnsupportedResource,
			wantField:  "spec.containers[0].resources.requests[hugepages-2Mi]",
		},
		{
			name: "extended resource in init container",
			mutate: func(p *corev1.Pod) {
				p.Spec.InitContainers = []corev1.Container{{Name: "init", Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{"example.com/fpga": resource.MustParse("1")},
				}}}
			},
			wantReason: lpmv1.ReasonUnsupportedResource,
			wantField:  "spec.initContainers[0].resources.requests[example.com/fpga]",
		},
		{
			name: "pod level extended resource",
			mutate: func(p *corev1.Pod) {
				p.Spec.Resources = &corev1.ResourceRequirements{
					Limits: corev1.ResourceList{"example.com/gpu": resource.MustParse("1")},
				}
			},
			wantReason: lpmv1.ReasonUnsupportedResource, wantField: "spec.resources.limits[example.com/gpu]",
		},
		{
			name: "dynamic resource claim",
			mutate: func(p *corev1.Pod) {
				p.Spec.ResourceClaims = []corev1.PodResourceClaim{{Name: "gpu", ResourceClaimName: ptr.To("gpu")}}
			},
			wantReason: lpmv1.ReasonUnsupportedResource, wantField: "spec.resourceClaims",
		},
		{
			name: "container claim",
			mutate: func(p *corev1.Pod) {
				p.Spec.Containers[0].Resources.Claims = []corev1.ResourceClaim{{Name: "gpu"}}
			},
			wantReason: lpmv1.ReasonUnsupportedResource, wantField: "spec.containers[0].resources.claims",
		},
		{
			name: "block device",
			mutate: func(p *corev1.Pod) {
				p.Spec.Containers[0].VolumeDevices = []corev1.VolumeDevice{{Name: "disk", DevicePath: "/dev/xvda"}}
			},
			wantReason: lpmv1.ReasonUnsupportedResource, wantField: "spec.containers[0].volumeDevices",
		},
		{
			name:       "dotted name without hostname",
			mutate:     func(p *corev1.Pod) { p.Name = "web.v1" },
			wantReason: lpmv1.ReasonUnsupportedHostname, wantField: "metadata.name",
		},
		{
			name: "dotted name with hostname allowed",
			mutate: func(p *corev1.Pod) {
				p.Name = "web.v1"
				p.Spec.Hostname = "web"
			},
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			pod := runningPod()
			if tc.mutate != nil {
				tc.mutate(pod)
			}
			got := CheckPod(pod)
			assertFailure(t, got, tc.wantReason, tc.wantField)
		})
	}
}

func ownedBy(apiVersion, kind string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.OwnerReferences = []metav1.OwnerReference{
			{APIVersion: "v1", Kind: "ConfigMap", Name: "bundle"},
			{APIVersion: apiVersion, Kind: kind, Name: "owner", Controller: ptr.To(true)},
		}
	}
}

func addVolume(source corev1.VolumeSource) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "extra", VolumeSource: source})
	}
}

func assertFailure(t *testing.T, got *Failure, wantReason lpmv1.Reason, wantField string) {
	t.Helper()
	if wantReason == "" {
		if got != nil {
			t.Fatalf("check failed with %s: %v, want pass", got.Reason, got)
		}
		return
	}
	if got == nil {
		t.Fatalf("check passed, want %s on %s", wantReason, wantField)
	}
	if got.Reason != wantReason {
		t.Errorf("reason = %s, want %s (%v)", got.Reason, wantReason, got)
	}
	if got.Field != wantField {
		t.Errorf("field = %q, want %q (%v)", got.Field, wantField, got)
	}
	if got.Message == "" {
		t.Errorf("message is empty")
	}
}

func TestCheckOtherMigrations(t *testing.T) {
	t0 := metav1.NewTime(time.Unix(1000, 0))
	t1 := metav1.NewTime(time.Unix(1001, 0))
	pm := func(name, uid string, created metav1.Time, phase lpmv1.MigrationPhase, dryRun bool) lpmv1.PodMigration {
		return lpmv1.PodMigration{
			ObjectMeta: metav1.ObjectMeta{
				Name: name, Namespace: "shop", UID: types.UID("uid-" + uid), CreationTimestamp: created,
			},
			Spec:   lpmv1.PodMigrationSpec{PodName: "web", DryRun: dryRun},
			Status: lpmv1.PodMigrationStatus{Phase: phase},
		}
	}
	testCases := []struct {
		name       string
		self       lpmv1.PodMigration
		others     []lpmv1.PodMigration
		wantReason lpmv1.Reason
	}{
		{name: "alone", self: pm("b", "b", t1, "", false)},
		{
			name:       "earlier pending migration wins",
			self:       pm("b", "b", t1, "", false),
			others:     []lpmv1.PodMigration{pm("a", "a", t0, lpmv1.PhasePending, false)},
			wantReason: lpmv1.ReasonMigrationInProgress,
		},
		{
			name:   "later pending migration loses",
			self:   pm("a", "a", t0, lpmv1.PhasePending, false),
			others: []lpmv1.PodMigration{pm("b", "b", t1, "", false)},
		},
		{
			name:       "same time goes to first name",
			self:       pm("b", "b", t0, "", false),
			others:     []lpmv1.PodMigration{pm("a", "a", t0, "", false)},
			wantReason: lpmv1.ReasonMigrationInProgress,
		},
		{
			name:       "running migration blocks an earlier one",
			self:       pm("a", "a", t0, lpmv1.PhasePending, false),
			others:     []lpmv1.PodMigration{pm("b", "b", t1, lpmv1.PhaseCheckpointing, false)},
			wantReason: lpmv1.ReasonMigrationInProgress,
		},
		{
			name: "finished migrations ignored",
			self: pm("c", "c", t1, "", false),
			others: []lpmv1.PodMigration{
				pm("a", "a", t0, lpmv1.PhaseSucceeded, false), pm("b", "b", t0, lpmv1.PhaseFailed, false),
			},
		},
		{
			name:   "dry run blocks nothing",
			self:   pm("b", "b", t1, "", false),
			others: []lpmv1.PodMigration{pm("a", "a", t0, lpmv1.PhasePending, true)},
		},
		{
			name:       "dry run sees a running migration",
			self:       pm("b", "b", t1, "", true),
			others:     []lpmv1.PodMigration{pm("a", "a", t0, lpmv1.PhaseRestoring, false)},
			wantReason: lpmv1.ReasonMigrationInProgress,
		},
		{
			name: "other pod ignored",
			self: pm("b", "b", t1, "", false),
			others: func() []lpmv1.PodMigration {
				o := pm("a", "a", t0, lpmv1.PhaseCheckpointing, false)
				o.Spec.PodName = "db"
				return []lpmv1.PodMigration{o}
			}(),
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			got := CheckOtherMigrations(&tc.self, append(tc.others, tc.self))
			wantField := ""
			if tc.wantReason != "" {
				wantField = "spec.podName"
			}
			assertFailure(t, got, tc.wantReason, wantField)
		})
	}
}

func TestFailureError(t *testing.T) {
	f := &Failure{Reason: lpmv1.ReasonHostNamespace, Field: "spec.hostNetwork", Message: "pod web uses it"}
	if diff := cmp.Diff("spec.hostNetwork: pod web uses it", f.Error()); diff != "" {
		t.Errorf("Error() mismatch (-want +got):\n%s", diff)
	}
}
