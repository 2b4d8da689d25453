package restoredpod

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
)

const volumeImage = "localhost/lpm/shop/web-lpm-volume-restore:3f2a9c1e"

// withEmptyDirs gives the source pod a disk-backed and a memory-backed
// emptyDir volume, mounted by its app container, and resources.
func withEmptyDirs(p *corev1.Pod) {
	p.Spec.Volumes = append(p.Spec.Volumes,
		corev1.Volume{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		corev1.Volume{Name: "shm", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			Medium: corev1.StorageMediumMemory}}},
	)
	p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts,
		corev1.VolumeMount{Name: "cache", MountPath: "/cache"}, corev1.VolumeMount{Name: "shm", MountPath: "/dev/shm"})
	p.Spec.Containers[0].Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"),
			corev1.ResourceMemory: resource.MustParse("64Mi")},
		Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
	}
}

func withVolumeData(p *Params) {
	p.VolumeData = &VolumeData{Image: volumeImage, Volumes: []string{"cache", "shm"}}
}

// wantRestoreContainer is the init container Build adds for withEmptyDirs
// and withVolumeData, for a pod that runs as root.
func wantRestoreContainer() corev1.Container {
	return corev1.Container{
		Name:    "lpm-volume-restore",
		Image:   volumeImage,
		Command: []string{"/lpm-volume-restore"},
		Args:    []string{"--data=/lpm-volume-data.tar", "--volumes-dir=/lpm/volumes"},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"),
				corev1.ResourceMemory: resource.MustParse("64Mi")},
			Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: "cache", MountPath: "/lpm/volumes/cache"},
			{Name: "shm", MountPath: "/lpm/volumes/shm"},
		},
		TerminationMessagePath:   "/dev/termination-log",
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		ImagePullPolicy:          corev1.PullNever,
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			Capabilities: &corev1.Capabilities{
				Drop: []corev1.Capability{"ALL"},
				Add:  []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"},
			},
		},
	}
}

// prependRestore puts c before the restored pod's native sidecars.
func prependRestore(p *corev1.Pod, c corev1.Container) {
	p.Spec.InitContainers = append([]corev1.Container{c}, p.Spec.InitContainers...)
}
