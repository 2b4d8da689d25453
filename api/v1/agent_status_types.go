package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SourceAgentStatus is the part of a PodMigration's status that the agent of
// the source node writes.
type SourceAgentStatus struct {
	// conditions report the source agent's steps. Types are Prepared,
	// Checkpointed, ImagesServed, Killed and CleanedUp.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// cutTime is when the agent started the first container's checkpoint,
	// by the source node's clock, with microseconds. With sourcePolicy
	// Delete the source pod makes no progress after it.
	// +optional
	CutTime *metav1.MicroTime `json:"cutTime,omitempty"`

	// frozen is true while the agent holds the source pod's containers
	// paused. The agent thaws them on rollback.
	// +optional
	Frozen bool `json:"frozen,omitempty"`

	// containers describe each checkpointed container and its image.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	Containers []SourceContainerStatus `json:"containers,omitempty"`

	// endpoint is the host:port where the target node's agent fetches the
	// checkpoint images in transfer mode Direct.
	// +optional
	// +kubebuilder:validation:MaxLength=261
	Endpoint string `json:"endpoint,omitempty"`

	// logPath is the directory on the source node that keeps the CRIU logs
	// of this migration's checkpoints.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	LogPath string `json:"logPath,omitempty"`

	// volumeData describes the image that carries the contents of the
	// pod's emptyDir volumes, read while the source was frozen. It is unset
	// when the pod has no emptyDir volume or every one of them is empty.
	// +optional
	VolumeData *VolumeDataStatus `json:"volumeData,omitempty"`
}

// VolumeDataStatus describes the volume data image of a migration: one
// image that holds the contents of the source pod's emptyDir volumes and the
// program that copies them into the restored pod's volumes.
type VolumeDataStatus struct {
	// image is the reference of the volume data image.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image,omitempty"`

	// imageDigest is the digest of the image's index, which the target
	// node's agent verifies.
	// +optional
	// +kubebuilder:validation:MaxLength=100
	ImageDigest string `json:"imageDigest,omitempty"`

	// imageBytes is the total size of the image's blobs.
	// +optional
	ImageBytes int64 `json:"imageBytes,omitempty"`

	// dataBytes is the size of the regular files' contents carried, summed
	// over all volumes.
	// +optional
	DataBytes int64 `json:"dataBytes,omitempty"`

	// volumes are the names of the emptyDir volumes the image carries.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=63
	Volumes []string `json:"volumes,omitempty"`
}

// SourceContainerStatus describes one checkpointed container.
type SourceContainerStatus struct {
	// name is the container's name in the pod.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	// image is the reference of the container's checkpoint image.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image,omitempty"`

	// imageDigest is the digest of the checkpoint image's index, which the
	// target node's agent verifies.
	// +optional
	// +kubebuilder:validation:MaxLength=100
	ImageDigest string `json:"imageDigest,omitempty"`

	// imageBytes is the total size of the checkpoint image's blobs.
	// +optional
	ImageBytes int64 `json:"imageBytes,omitempty"`

	// baseImage is the image the container ran when it was checkpointed, as
	// recorded in the archive.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	BaseImage string `json:"baseImage,omitempty"`

	// baseImageID is the ID (config digest) of the base image on the source
	// node. The target node must restore onto exactly that image.
	// +optional
	// +kubebuilder:validation:MaxLength=100
	BaseImageID string `json:"baseImageID,omitempty"`

	// archiveBytes is the size of the checkpoint archive.
	// +optional
	ArchiveBytes int64 `json:"archiveBytes,omitempty"`

	// freezingTime is how long CRIU took to freeze the processes.
	// +optional
	FreezingTime *metav1.Duration `json:"freezingTime,omitempty"`

	// frozenTime is how long the processes stayed frozen during the dump.
	// +optional
	FrozenTime *metav1.Duration `json:"frozenTime,omitempty"`

	// pagesWritten is the number of memory pages CRIU wrote.
	// +optional
	PagesWritten int64 `json:"pagesWritten,omitempty"`
}

// TargetAgentStatus is the part of a PodMigration's status that the agent of
// the target node writes.
type TargetAgentStatus struct {
	// conditions report the target agent's steps. Types are Prepared,
	// ImagesReady, Restored and CleanedUp.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// bytesDone is the number of image bytes received so far.
	// +optional
	BytesDone int64 `json:"bytesDone,omitempty"`

	// bytesTotal is the number of image bytes to receive.
	// +optional
	BytesTotal int64 `json:"bytesTotal,omitempty"`

	// baseImageBytes is the number of base image layer bytes the agent
	// copied from the source node's agent while preparing, because this
	// node lacked a container's base image and could not pull it. Layers
	// this node already held are not copied and not counted.
	// +optional
	BaseImageBytes int64 `json:"baseImageBytes,omitempty"`

	// containers describe each container's image on the target node and,
	// once the restored pod runs, whether the runtime restored it.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	Containers []TargetContainerStatus `json:"containers,omitempty"`

	// readyTime is when the agent saw the restored pod's Ready condition
	// turn True, by the target node's clock, with microseconds. The
	// kubelet records that transition in whole seconds by the same clock,
	// so readyTime is never earlier than it and, when the agent saw it
	// late, no later than one second after it.
	// +optional
	ReadyTime *metav1.MicroTime `json:"readyTime,omitempty"`

	// logPath is the directory on the target node that keeps the CRIU
	// restore logs of this migration, set when a restore failed and its log
	// could be kept.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	LogPath string `json:"logPath,omitempty"`

	// volumeDataImage is the reference under which the volume data image
	// is available to the target node's runtime. The restored pod's init
	// container runs it.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	VolumeDataImage string `json:"volumeDataImage,omitempty"`
}

// TargetContainerStatus describes one container on the target node.
type TargetContainerStatus struct {
	// name is the container's name in the pod.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	// image is the reference under which the checkpoint image is available
	// to the target node's runtime. The restored pod uses it.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image,omitempty"`

	// containerID is the runtime's ID of the restored container.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	ContainerID string `json:"containerID,omitempty"`

	// restored is true when the runtime reports that it restored the
	// container from its checkpoint rather than starting it fresh.
	// +optional
	Restored bool `json:"restored,omitempty"`
}
