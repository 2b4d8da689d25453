package restoredpod

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

const migrationUID = "3f2a9c1e-0000-4000-8000-000000000001"

func sourcePod() *corev1.Pod {
	always := corev1.ContainerRestartPolicyAlways
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:                       "web",
			Namespace:                  "shop",
			UID:                        "source-uid",
			ResourceVersion:            "42",
			Generation:                 3,
			CreationTimestamp:          metav1.NewTime(time.Unix(1000, 0)),
			DeletionTimestamp:          nil,
			DeletionGracePeriodSeconds: nil,
			Labels:                     map[string]string{"app": "web"},
			Annotations:                map[string]string{"team": "checkout"},
			Finalizers:                 []string{"example.com/keep"},
			ManagedFields:              []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
		},
		Spec: corev1.PodSpec{
			NodeName:           "node-a",
			ServiceAccountName: "web",
			Priority:           ptr.To[int32](0),
			SchedulingGates:    []corev1.PodSchedulingGate{{Name: "example.com/gate"}},
			InitContainers: []corev1.Container{
				{Name: "migrate-db", Image: "registry.example/migrate:1"},
				{Name: "proxy", Image: "registry.example/proxy:1", RestartPolicy: &always},
			},
			Containers: []corev1.Container{
				{
					Name:            "app",
					Image:           "registry.example/web:1",
					ImagePullPolicy: corev1.PullAlways,
					VolumeMounts: []corev1.VolumeMount{
						{Name: "kube-api-access", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"},
						{Name: "config", MountPath: "/etc/web"},
					},
				},
			},
			EphemeralContainers: []corev1.EphemeralContainer{
				{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "busybox"}},
			},
			Volumes: []corev1.Volume{
				{Name: "kube-api-access", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
					Sources: []corev1.VolumeProjection{
						{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
							Path: "token", ExpirationSeconds: ptr.To[int64](3607),
						}},
						{ConfigMap: &corev1.ConfigMapProjection{
							LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
						}},
						{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{
							{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}},
						}}},
					},
				}}},
				{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: "web-config"},
				}}},
				{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "web-tls"}}},
				{Name: "podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
					Items: []corev1.DownwardAPIVolumeFile{{
						Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"},
					}},
				}}},
			},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.7"},
	}
}

func migration() *lpmv1.PodMigration {
	return &lpmv1.PodMigration{
		ObjectMeta: metav1.ObjectMeta{Name: "move-web", Namespace: "shop", UID: migrationUID},
		Spec:       lpmv1.PodMigrationSpec{PodName: "web"},
	}
}

func images() map[string]string {
	return map[string]string{
		"proxy": "localhost/lpm/shop/web-proxy:3f2a9c1e",
		"app":   "localhost/lpm/shop/web-app:3f2a9c1e",
	}
}

// wantPod is what Build returns for sourcePod with the default parameters.
func wantPod() *corev1.Pod {
	always := corev1.ContainerRestartPolicyAlways
	src := sourcePod()

	spec := src.Spec.DeepCopy()
	spec.NodeName = "node-b"
	spec.Hostname = "web"
	spec.Priority = nil
	spec.SchedulingGates = nil
	spec.EphemeralContainers = nil
	spec.InitContainers = []corev1.Container{{
		Name: "proxy", Image: "localhost/lpm/shop/web-proxy:3f2a9c1e",
		ImagePullPolicy: corev1.PullNever, RestartPolicy: &always,
	}}
	spec.Containers[0].Image = "localhost/lpm/shop/web-app:3f2a9c1e"
	spec.Containers[0].ImagePullPolicy = corev1.PullNever

	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      "web-restored",
			Namespace: "shop",
			Labels:    map[string]string{"app": "web"},
			Annotations: map[string]string{
				"team":                       "checkout",
				lpmv1.AnnotationMigration:    "shop/move-web",
				lpmv1.AnnotationMigrationUID: migrationUID,
				lpmv1.AnnotationSourcePod:    "web",
				lpmv1.AnnotationSourceNode:   "node-a",
			},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "lpm.dev/v1", Kind: "PodMigration", Name: "move-web", UID: migrationUID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: *spec,
	}
}

func TestBuild(t *testing.T) {
	testCases := []struct {
		name    string
		source  func(*corev1.Pod)
		params  func(*Params)
		want    func(*corev1.Pod)
		wantErr string
	}{
		{
			name: "direct transfer",
		},
		{
			name: "registry transfer pulls with secret",
			params: func(p *Params) {
				p.Migration.Spec.Transfer = &lpmv1.Transfer{
					Mode:     lpmv1.TransferModeRegistry,
					Registry: &lpmv1.RegistryTransfer{Repository: "registry.example/ckpt", PullSecretName: "ckpt-pull"},
				}
				p.Images = map[string]string{
					"proxy": "registry.example/ckpt:web-proxy-3f2a9c1e",
					"app":   "registry.example/ckpt:web-app-3f2a9c1e",
				}
			},
			want: func(p *corev1.Pod) {
				p.Spec.InitContainers[0].Image = "registry.example/ckpt:web-proxy-3f2a9c1e"
				p.Spec.InitContainers[0].ImagePullPolicy = corev1.PullIfNotPresent
				p.Spec.Containers[0].Image = "registry.example/ckpt:web-app-3f2a9c1e"
				p.Spec.Containers[0].ImagePullPolicy = corev1.PullIfNotPresent
				p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "ckpt-pull"}}
			},
		},
		{
			name: "registry pull secret listed once",
			source: func(p *corev1.Pod) {
				p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "ckpt-pull"}}
			},
			params: func(p *Params) {
				p.Migration.Spec.Transfer = &lpmv1.Transfer{
					Mode:     lpmv1.TransferModeRegistry,
					Registry: &lpmv1.RegistryTransfer{Repository: "registry.example/ckpt", PullSecretName: "ckpt-pull"},
				}
			},
			want: func(p *corev1.Pod) {
				p.Spec.InitContainers[0].ImagePullPolicy = corev1.PullIfNotPresent
				p.Spec.Containers[0].ImagePullPolicy = corev1.PullIfNotPresent
				p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "ckpt-pull"}}
			},
		},
		{
			name:   "explicit hostname kept",
			source: func(p *corev1.Pod) { p.Spec.Hostname = "frontend" },
			want:   func(p *corev1.Pod) { p.Spec.Hostname = "frontend" },
		},
		{
			name:   "hostname override kept without hostname",
			source: func(p *corev1.Pod) { p.Spec.HostnameOverride = ptr.To("frontend.example") },
			want: func(p *corev1.Pod) {
				p.Spec.Hostname = ""
				p.Spec.HostnameOverride = ptr.To("frontend.example")
			},
		},
		{
			name:   "dotted name leaves hostname unset",
			source: func(p *corev1.Pod) { p.Name = "web.v1" },
			params: func(p *Params) { p.Name = "web.v1-restored" },
			want: func(p *corev1.Pod) {
				p.Name = "web.v1-restored"
				p.Spec.Hostname = ""
				p.Annotations[lpmv1.AnnotationSourcePod] = "web.v1"
			},
		},
		{
			name:   "long name keeps truncated hostname",
			source: func(p *corev1.Pod) { p.Name = strings.Repeat("a", 62) + "-b-c" },
			params: func(p *Params) { p.Name = strings.Repeat("a", 54) + Suffix },
			want: func(p *corev1.Pod) {
				p.Name = strings.Repeat("a", 54) + Suffix
				p.Spec.Hostname = strings.Repeat("a", 62)
				p.Annotations[lpmv1.AnnotationSourcePod] = strings.Repeat("a", 62) + "-b-c"
			},
		},
		{
			name: "terminating source clears deletion fields",
			source: func(p *corev1.Pod) {
				p.DeletionTimestamp = ptr.To(metav1.NewTime(time.Unix(2000, 0)))
				p.DeletionGracePeriodSeconds = ptr.To[int64](30)
				p.GenerateName = "web-"
			},
		},
		{
			name: "non-controller owner kept",
			source: func(p *corev1.Pod) {
				p.OwnerReferences = []metav1.OwnerReference{
					{APIVersion: "v1", Kind: "ConfigMap", Name: "bundle", UID: "cm-uid"},
					{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-1", UID: "rs-uid", Controller: ptr.To(true)},
				}
			},
			want: func(p *corev1.Pod) {
				p.OwnerReferences = append([]metav1.OwnerReference{
					{APIVersion: "v1", Kind: "ConfigMap", Name: "bundle", UID: "cm-uid"},
				}, p.OwnerReferences...)
			},
		},
		{
			name: "stale migration annotations replaced",
			source: func(p *corev1.Pod) {
				p.Annotations[lpmv1.AnnotationMigration] = "shop/earlier"
				p.Annotations[lpmv1.AnnotationMigrationUID] = "earlier-uid"
				p.Annotations[lpmv1.AnnotationSourcePod] = "older"
				p.Annotations[lpmv1.AnnotationSourceNode] = "node-c"
			},
		},
		{
			name: "priority class recomputed by admission",
			source: func(p *corev1.Pod) {
				p.Spec.PriorityClassName = "high"
				p.Spec.Priority = ptr.To[int32](1000)
				p.Spec.PreemptionPolicy = ptr.To(corev1.PreemptNever)
			},
			want: func(p *corev1.Pod) { p.Spec.PriorityClassName = "high" },
		},
		{
			name:   "preemption policy without class kept",
			source: func(p *corev1.Pod) { p.Spec.PreemptionPolicy = ptr.To(corev1.PreemptNever) },
			want:   func(p *corev1.Pod) { p.Spec.PreemptionPolicy = ptr.To(corev1.PreemptNever) },
		},
		{
			name: "runtime class overhead recomputed by admission",
			source: func(p *corev1.Pod) {
				p.Spec.RuntimeClassName = ptr.To("kata")
				p.Spec.Overhead = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")}
			},
			want: func(p *corev1.Pod) { p.Spec.RuntimeClassName = ptr.To("kata") },
		},
		{
			name:   "emptyDir without volume data adds no init container",
			source: withEmptyDirs,
			want:   withEmptyDirs,
		},
		{
			name:   "empty volume data image adds no init container",
			source: withEmptyDirs,
			params: func(p *Params) { p.VolumeData = &VolumeData{Volumes: []string{"cache"}} },
			want:   withEmptyDirs,
		},
		{
			name:   "volume data restored by the only regular init container",
			source: withEmptyDirs,
			params: withVolumeData,
			want: func(p *corev1.Pod) {
				withEmptyDirs(p)
				prependRestore(p, wantRestoreContainer())
			},
		},
		{
			name:   "volume data pulled from the registry",
			source: withEmptyDirs,
			params: func(p *Params) {
				withVolumeData(p)
				p.Migration.Spec.Transfer = &lpmv1.Transfer{Mode: lpmv1.TransferModeRegistry,
					Registry: &lpmv1.RegistryTransfer{Repository: "registry.example/ckpt"}}
				p.VolumeData.Image = "registry.example/ckpt@sha256:0123"
			},
			want: func(p *corev1.Pod) {
				withEmptyDirs(p)
				c := wantRestoreContainer()
				c.Image, c.ImagePullPolicy = "registry.example/ckpt@sha256:0123", corev1.PullIfNotPresent
				prependRestore(p, c)
				p.Spec.InitContainers[1].ImagePullPolicy = corev1.PullIfNotPresent
				p.Spec.Containers[0].ImagePullPolicy = corev1.PullIfNotPresent
			},
		},
		{
			name: "volume restore as the app's non-root user without capabilities",
			source: func(p *corev1.Pod) {
				withEmptyDirs(p)
				p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true),
					FSGroup: ptr.To[int64](2000)}
				p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: ptr.To[int64](1000),
					RunAsGroup: ptr.To[int64](3000), AllowPrivilegeEscalation: ptr.To(false),
					SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
			},
			params: withVolumeData,
			want: func(p *corev1.Pod) {
				withEmptyDirs(p)
				p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true),
					FSGroup: ptr.To[int64](2000)}
				p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: ptr.To[int64](1000),
					RunAsGroup: ptr.To[int64](3000), AllowPrivilegeEscalation: ptr.To(false),
					SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
				c := wantRestoreContainer()
				c.SecurityContext = &corev1.SecurityContext{RunAsUser: ptr.To[int64](1000),
					RunAsGroup: ptr.To[int64](3000), AllowPrivilegeEscalation: ptr.To(false),
					ReadOnlyRootFilesystem: ptr.To(true),
					SeccompProfile:         &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					Capabilities:           &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
				prependRestore(p, c)
			},
		},
		{
			name: "volume restore keeps only the root app's capabilities",
			source: func(p *corev1.Pod) {
				withEmptyDirs(p)
				p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Capabilities: &corev1.Capabilities{
					Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_BIND_SERVICE", "CHOWN"}}}
			},
			params: withVolumeData,
			want: func(p *corev1.Pod) {
				withEmptyDirs(p)
				p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Capabilities: &corev1.Capabilities{
					Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_BIND_SERVICE", "CHOWN"}}}
				c := wantRestoreContainer()
				c.SecurityContext.Capabilities.Add = []corev1.Capability{"CHOWN"}
				prependRestore(p, c)
			},
		},
		{
			name: "volume restore runs as the pod's root user",
			source: func(p *corev1.Pod) {
				withEmptyDirs(p)
				p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](0)}
			},
			params: withVolumeData,
			want: func(p *corev1.Pod) {
				withEmptyDirs(p)
				p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](0)}
				prependRestore(p, wantRestoreContainer())
			},
		},
		{
			name:    "volume data for a volume that is no emptyDir",
			source:  withEmptyDirs,
			params:  func(p *Params) { p.VolumeData = &VolumeData{Image: volumeImage, Volumes: []string{"config"}} },
			wantErr: `the volume data image carries "config", which is no emptyDir volume of the pod`,
		},
		{
			name: "second move replaces the earlier volume restore",
			source: func(p *corev1.Pod) {
				withEmptyDirs(p)
				prependRestore(p, corev1.Container{Name: "lpm-volume-restore", Image: "localhost/lpm/old:1"})
			},
			params: withVolumeData,
			want: func(p *corev1.Pod) {
				withEmptyDirs(p)
				prependRestore(p, wantRestoreContainer())
			},
		},
		{
			name: "volume restore container name taken",
			source: func(p *corev1.Pod) {
				withEmptyDirs(p)
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "lpm-volume-restore"})
			},
			params: func(p *Params) {
				withVolumeData(p)
				p.Images["lpm-volume-restore"] = "localhost/lpm/shop/web-x:3f2a9c1e"
			},
			wantErr: `container name "lpm-volume-restore" is taken`,
		},
		{
			name:    "missing image for sidecar",
			params:  func(p *Params) { delete(p.Images, "proxy") },
			wantErr: `no checkpoint image for container "proxy"`,
		},
		{
			name:    "empty image for app container",
			params:  func(p *Params) { p.Images["app"] = "" },
			wantErr: `no checkpoint image for container "app"`,
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			src := sourcePod()
			if tc.source != nil {
				tc.source(src)
			}
			before := src.DeepCopy()
			p := Params{Source: src, Migration: migration(), Name: "web-restored", TargetNode: "node-b", Images: images()}
			if tc.params != nil {
				tc.params(&p)
			}

			got, err := Build(p)

			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("Build() error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Build() error = %v", err)
			}
			want := wantPod()
			if tc.want != nil {
				tc.want(want)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Build() mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, src); diff != "" {
				t.Errorf("Build() modified the source pod (-before +after):\n%s", diff)
			}
		})
	}
}

func TestCheckpointedContainers(t *testing.T) {
	got := CheckpointedContainers(sourcePod())
	if diff := cmp.Diff([]string{"proxy", "app"}, got); diff != "" {
		t.Errorf("CheckpointedContainers() mismatch (-want +got):\n%s", diff)
	}
}

func TestWithoutOwner(t *testing.T) {
	refs := []metav1.OwnerReference{
		{Kind: "ConfigMap", Name: "bundle", UID: "cm-uid"},
		OwnerReference(migration()),
	}
	got := WithoutOwner(refs, migrationUID)
	want := []metav1.OwnerReference{{Kind: "ConfigMap", Name: "bundle", UID: "cm-uid"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("WithoutOwner() mismatch (-want +got):\n%s", diff)
	}
	if len(refs) != 2 {
		t.Errorf("WithoutOwner() modified its input: %v", refs)
	}
}
