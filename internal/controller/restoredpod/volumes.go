package restoredpod

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/lpm-dev/lpm/internal/volumedata"
)

// VolumeData names the image that carries the source pod's emptyDir
// volumes and the volumes it carries.
type VolumeData struct {
	// Image is the volume data image on the target node.
	Image string
	// Volumes are the names of the carried emptyDir volumes.
	Volumes []string
}

// copierCapabilities are the capabilities the copier needs as root to give
// each file its owner (CHOWN), write into and set the times of files of
// other owners (DAC_OVERRIDE, FOWNER) and keep set-group-ID bits (FSETID).
// All four are in the runtime's default set.
var copierCapabilities = []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"}

// volumeRestoreContainer returns the init container that copies the carried
// emptyDir volumes into the restored pod's volumes before the runtime
// restores the containers. kept are the containers the restored pod keeps:
// the regular init containers, such as the copier of an earlier move, are
// gone. It runs as the first app container's user with
// at most that container's capabilities, on a read-only root file system,
// and with the same resources, so the pod's QoS class and effective
// requests stay the same.
func volumeRestoreContainer(src *corev1.Pod, kept []corev1.Container, vd *VolumeData,
	pullPolicy corev1.PullPolicy) (corev1.Container, error) {
	for _, c := range kept {
		if c.Name == volumedata.ContainerName {
			return corev1.Container{}, fmt.Errorf("container name %q is taken", volumedata.ContainerName)
		}
	}
	if len(src.Spec.Containers) == 0 {
		return corev1.Container{}, fmt.Errorf("pod has no container")
	}
	var mounts []corev1.VolumeMount
	for _, name := range vd.Volumes {
		i := slices.IndexFunc(src.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == name })
		if i < 0 || src.Spec.Volumes[i].EmptyDir == nil {
			return corev1.Container{}, fmt.Errorf("the volume data image carries %q, which is no emptyDir "+
				"volume of the pod", name)
		}
		mounts = append(mounts, corev1.VolumeMount{Name: name, MountPath: volumedata.MountPath(name)})
	}
	first := &src.Spec.Containers[0]
	return corev1.Container{
		Name:    volumedata.ContainerName,
		Image:   vd.Image,
		Command: []string{volumedata.CopierPath},
		Args:    []string{"--data=" + volumedata.DataPath, "--volumes-dir=" + volumedata.MountRoot},
		Resources: corev1.ResourceRequirements{
			Requests: first.Resources.Requests.DeepCopy(),
			Limits:   first.Resources.Limits.DeepCopy(),
		},
		VolumeMounts:             mounts,
		TerminationMessagePath:   corev1.TerminationMessagePathDefault,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		ImagePullPolicy:          pullPolicy,
		SecurityContext:          copierSecurityContext(src.Spec.SecurityContext, first.SecurityContext),
	}, nil
}

// copierSecurityContext returns the copier's security context: the first
// app container's user, group and confinement, no privilege escalation, a
// read-only root file system, and, when it runs as root, the four
// capabilities of copierCapabilities that the app container keeps.
func copierSecurityContext(pod *corev1.PodSecurityContext, app *corev1.SecurityContext) *corev1.SecurityContext {
	sc := &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		ReadOnlyRootFilesystem:   ptr.To(true),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	if app != nil {
		sc.RunAsUser = app.RunAsUser
		sc.RunAsGroup = app.RunAsGroup
		sc.RunAsNonRoot = app.RunAsNonRoot
		sc.SELinuxOptions = app.SELinuxOptions.DeepCopy()
		sc.SeccompProfile = app.SeccompProfile.DeepCopy()
		sc.AppArmorProfile = app.AppArmorProfile.DeepCopy()
	}
	if !runsAsRoot(pod, sc) {
		return sc
	}
	for _, c := range copierCapabilities {
		if keepsCapability(app, c) {
			sc.Capabilities.Add = append(sc.Capabilities.Add, c)
		}
	}
	return sc
}

// runsAsRoot reports whether the spec lets the container run as root: no
// runAsNonRoot and no user other than 0, on the container or the pod.
func runsAsRoot(pod *corev1.PodSecurityContext, sc *corev1.SecurityContext) bool {
	user, nonRoot := sc.RunAsUser, sc.RunAsNonRoot
	if pod != nil {
		if user == nil {
			user = pod.RunAsUser
		}
		if nonRoot == nil {
			nonRoot = pod.RunAsNonRoot
		}
	}
	return (user == nil || *user == 0) && (nonRoot == nil || !*nonRoot)
}

// keepsCapability reports whether a container with security context sc
// has capability c of the runtime's default set.
func keepsCapability(sc *corev1.SecurityContext, c corev1.Capability) bool {
	if sc == nil || sc.Capabilities == nil {
		return true
	}
	if slices.Contains(sc.Capabilities.Add, c) || slices.Contains(sc.Capabilities.Add, "CAP_"+c) {
		return true
	}
	for _, d := range sc.Capabilities.Drop {
		if d == "ALL" || d == c || d == "CAP_"+c {
			return false
		}
	}
	return true
}
