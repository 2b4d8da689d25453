package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SourcePolicy decides what happens to the source pod once the restored pod
// has been verified.
// +kubebuilder:validation:Enum=Delete;Keep
type SourcePolicy string

const (
	// SourcePolicyDelete deletes the source pod after the restored pod has
	// been verified. This moves the pod.
	SourcePolicyDelete SourcePolicy = "Delete"
	// SourcePolicyKeep leaves the source pod running. This clones the pod.
	SourcePolicyKeep SourcePolicy = "Keep"
)

// TransferMode selects how checkpoint images reach the target node.
// +kubebuilder:validation:Enum=Direct;Registry
type TransferMode string

const (
	// TransferModeDirect streams the images from the source node's agent to
	// the target node's agent over mutually authenticated TLS.
	TransferModeDirect TransferMode = "Direct"
	// TransferModeRegistry pushes the images to a registry repository, and
	// the target node's runtime pulls them from there.
	TransferModeRegistry TransferMode = "Registry"
)

// PodMigrationSpec is the requested move. It cannot change after creation.
// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec is immutable; delete the PodMigration and create a new one"
// +kubebuilder:validation:XValidation:rule="!has(self.transfer) || self.transfer.mode != 'Registry' || has(self.transfer.registry)",message="transfer.registry is required when transfer.mode is Registry"
// +kubebuilder:validation:XValidation:rule="!has(self.transfer) || !has(self.transfer.registry) || self.transfer.mode == 'Registry'",message="transfer.registry is only allowed when transfer.mode is Registry"
type PodMigrationSpec struct {
	// podName is the name of the pod to move, in the namespace of the
	// PodMigration.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	PodName string `json:"podName"`

	// targetNode is the node to move the pod to. When empty, the controller
	// picks a node that the pod fits on by the scheduler's rules (node
	// selector, required node affinity, taints, free resources, readiness)
	// and whose agent can restore, and records it in status.targetNode.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	TargetNode string `json:"targetNode,omitempty"`

	// sourcePolicy is what happens to the source pod after the restored pod
	// has been verified: Delete (the default) moves the pod, Keep clones it.
	// With Delete, the source pod is frozen from the checkpoint on and
	// deleted only after the restored pod is verified; with Keep, it keeps
	// running throughout.
	// +optional
	// +kubebuilder:default=Delete
	SourcePolicy SourcePolicy `json:"sourcePolicy,omitempty"`

	// timeouts bound each stage of the migration. A stage that runs past its
	// timeout fails the migration and rolls it back.
	// +optional
	Timeouts *Timeouts `json:"timeouts,omitempty"`

	// transfer selects how checkpoint images reach the target node.
	// +optional
	Transfer *Transfer `json:"transfer,omitempty"`

	// settle is how long the restored pod must stay Ready with no container
	// restart before the migration counts as verified and the source pod is
	// removed. Between 0s and 10m; defaults to 5s.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('10m')",message="settle must be between 0s and 10m"
	Settle *metav1.Duration `json:"settle,omitempty"`

	// dryRun runs every preflight check and reports the result in status
	// without touching the pod or creating anything.
	// +optional
	DryRun bool `json:"dryRun,omitempty"`
}

// Timeouts bound the stages of a migration. Each value is a Go duration
// string such as "90s" or "5m".
type Timeouts struct {
	// checkpoint bounds the checkpoint of all of the pod's containers. It is
	// passed to the kubelet's checkpoint call. Between 1s and 1h; defaults
	// to the controller's --default-checkpoint-timeout (2m unless set).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('1h')",message="checkpoint timeout must be between 1s and 1h"
	Checkpoint *metav1.Duration `json:"checkpoint,omitempty"`

	// transfer bounds building the checkpoint images, carrying them to the
	// target node and importing them there. Before the checkpoint it also
	// bounds the agents' preparation, in which the target node pulls the
	// base images it lacks, counted from the controller's own checks.
	// Between 1s and 6h; defaults to the controller's
	// --default-transfer-timeout (10m unless set).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('6h')",message="transfer timeout must be between 1s and 6h"
	Transfer *metav1.Duration `json:"transfer,omitempty"`

	// restore bounds the time from creating the restored pod to verifying
	// it, settle window included. Between 1s and 1h; defaults to the
	// controller's --default-restore-timeout (5m unless set).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('1h')",message="restore timeout must be between 1s and 1h"
	Restore *metav1.Duration `json:"restore,omitempty"`

	// overall bounds the whole migration, from creation to success. Between
	// 1s and 12h; defaults to the controller's --default-overall-timeout
	// (30m unless set).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('12h')",message="overall timeout must be between 1s and 12h"
	Overall *metav1.Duration `json:"overall,omitempty"`
}

// Transfer selects how checkpoint images reach the target node.
type Transfer struct {
	// mode is Direct (the default: the target node's agent fetches the
	// images from the source node's agent) or Registry (the images are
	// pushed to registry.repository and pulled by the target node).
	// +optional
	// +kubebuilder:default=Direct
	Mode TransferMode `json:"mode,omitempty"`

	// registry names the repository for mode Registry.
	// +optional
	Registry *RegistryTransfer `json:"registry,omitempty"`
}

// RegistryTransfer names the registry repository that carries the images.
type RegistryTransfer struct {
	// repository is the image repository to push the checkpoint images to,
	// for example "registry.example.com:5000/team/checkpoints". It must name
	// the registry's host: there is no default registry. Each image
	// gets a tag derived from the pod, the container and the migration.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9][a-zA-Z0-9.:_/-]*$`
	// +kubebuilder:validation:XValidation:rule="self.contains('/') && (self.split('/')[0].contains('.') || self.split('/')[0].contains(':') || self.split('/')[0] == 'localhost')",message="repository must start with the registry's host, for example registry.example.com/team/checkpoints: checkpoint images hold the pod's memory and are never pushed to a default registry"
	Repository string `json:"repository"`

	// pullSecretName names a kubernetes.io/dockerconfigjson Secret in the
	// namespace of the PodMigration that holds credentials for the
	// repository. The agents use it to push and pull, and the restored pod
	// lists it in imagePullSecrets.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	PullSecretName string `json:"pullSecretName,omitempty"`
}

// MigrationPhase is a one-word summary of where a migration is. Conditions
// carry the detail.
// +kubebuilder:validation:Enum=Pending;Checkpointing;CheckpointComplete;PreparingImages;Restoring;Succeeded;Failed
type MigrationPhase string

const (
	// PhasePending is the phase in which preflight checks run, or the
	// migration waits for a free slot under the concurrency limits. The
	// source pod is untouched.
	PhasePending MigrationPhase = "Pending"
	// PhaseCheckpointing is the phase in which the source node's agent
	// checkpoints the pod.
	PhaseCheckpointing MigrationPhase = "Checkpointing"
	// PhaseCheckpointComplete means that every container is checkpointed
	// and, with sourcePolicy Delete, the source pod is frozen.
	PhaseCheckpointComplete MigrationPhase = "CheckpointComplete"
	// PhasePreparingImages is the phase in which checkpoint images are
	// built, carried to the target node and imported there.
	PhasePreparingImages MigrationPhase = "PreparingImages"
	// PhaseRestoring is the phase in which the restored pod exists and is
	// being verified.
	PhaseRestoring MigrationPhase = "Restoring"
	// PhaseSucceeded means that the restored pod was verified and, with
	// sourcePolicy Delete, the source pod was removed. A dry run ends here
	// when every preflight check passed.
	PhaseSucceeded MigrationPhase = "Succeeded"
	// PhaseFailed means that the migration stopped and was rolled back. The
	// source pod runs as before.
	PhaseFailed MigrationPhase = "Failed"
)

// PodMigrationStatus is the observed state of a migration.
//
// The controller writes every field except source and target, which the
// agents of the source and target nodes write. docs/design.md describes
// the contract between them.
type PodMigrationStatus struct {
	// phase is a one-word summary of where the migration is.
	// +optional
	Phase MigrationPhase `json:"phase,omitempty"`

	// conditions describe the migration's progress. Types are
	// PreflightPassed, Checkpointed, ImagesReady, Restored, SourceRemoved
	// and the summary condition Succeeded.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// sourcePodUID is the UID of the pod being moved, recorded when the
	// preflight checks pass. A pod of the same name with another UID is a
	// different pod, and the migration fails rather than touch it.
	// +optional
	// +kubebuilder:validation:MaxLength=36
	SourcePodUID string `json:"sourcePodUID,omitempty"`

	// sourceNode is the node the pod runs on when the migration starts.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	SourceNode string `json:"sourceNode,omitempty"`

	// targetNode is the node the pod moves to: spec.targetNode, or the node
	// the controller picked.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	TargetNode string `json:"targetNode,omitempty"`

	// restoredPod is the name of the pod restored on the target node.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	RestoredPod string `json:"restoredPod,omitempty"`

	// checkpointImages maps each checkpointed container's name to the
	// reference of its checkpoint image.
	// +optional
	CheckpointImages map[string]string `json:"checkpointImages,omitempty"`

	// containers holds the checkpoint figures of each container.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	Containers []ContainerMigrationStatus `json:"containers,omitempty"`

	// startTime is when the controller first processed the migration.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`

	// completionTime is when the migration reached Succeeded or Failed.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`

	// phaseTransitions records when the migration entered each phase, by
	// the controller's clock, with microseconds.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	PhaseTransitions []PhaseTransition `json:"phaseTransitions,omitempty"`

	// cutTime is when the source pod stopped serving: the start of the
	// first container's checkpoint, by the source node's clock, with
	// microseconds. The controller copies it from status.source.cutTime.
	// +optional
	CutTime *metav1.MicroTime `json:"cutTime,omitempty"`

	// restoredReadyTime is when the restored pod became Ready, with
	// microseconds. The agent of the target node observes it by the clock
	// that the kubelet's whole-second Ready condition uses and reports it in
	// status.target.readyTime. The controller copies it here.
	// +optional
	RestoredReadyTime *metav1.MicroTime `json:"restoredReadyTime,omitempty"`

	// downtime is restoredReadyTime minus cutTime: how long the pod served
	// nowhere. The two times come from the clocks of two nodes, so their
	// skew adds to it. Set with sourcePolicy Delete only.
	// +optional
	Downtime *metav1.Duration `json:"downtime,omitempty"`

	// volumeDataBytes is the size of the emptyDir volumes' file contents
	// that the migration carries to the restored pod. The controller copies
	// it from status.source.volumeData.dataBytes.
	// +optional
	VolumeDataBytes int64 `json:"volumeDataBytes,omitempty"`

	// transferProgress reports the bytes of checkpoint images received by
	// the target node.
	// +optional
	TransferProgress *TransferProgress `json:"transferProgress,omitempty"`

	// source is written by the agent of status.sourceNode and by nobody
	// else.
	// +optional
	Source *SourceAgentStatus `json:"source,omitempty"`

	// target is written by the agent of status.targetNode and by nobody
	// else.
	// +optional
	Target *TargetAgentStatus `json:"target,omitempty"`
}

// ContainerMigrationStatus holds the checkpoint figures of one container.
type ContainerMigrationStatus struct {
	// name is the container's name in the pod.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`

	// archiveBytes is the size of the container's checkpoint archive.
	// +optional
	ArchiveBytes int64 `json:"archiveBytes,omitempty"`

	// freezingTime is how long CRIU took to freeze the container's
	// processes, from the dump statistics.
	// +optional
	FreezingTime *metav1.Duration `json:"freezingTime,omitempty"`

	// frozenTime is how long the processes stayed frozen during the dump,
	// from the dump statistics.
	// +optional
	FrozenTime *metav1.Duration `json:"frozenTime,omitempty"`

	// pagesWritten is the number of memory pages CRIU wrote, from the dump
	// statistics.
	// +optional
	PagesWritten int64 `json:"pagesWritten,omitempty"`

	// restored is true once the target node's runtime reports that it
	// restored this container from its checkpoint.
	// +optional
	Restored bool `json:"restored,omitempty"`
}

// PhaseTransition records when a migration entered a phase.
type PhaseTransition struct {
	// phase is the phase entered.
	// +required
	Phase MigrationPhase `json:"phase"`

	// time is when the phase was entered, with microseconds.
	// +required
	Time metav1.MicroTime `json:"time"`
}

// TransferProgress counts the bytes of checkpoint images moved so far.
type TransferProgress struct {
	// bytesDone is the number of bytes received by the target node.
	// +optional
	BytesDone int64 `json:"bytesDone,omitempty"`

	// bytesTotal is the number of bytes to move, once known.
	// +optional
	BytesTotal int64 `json:"bytesTotal,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=pm,categories=lpm
// +kubebuilder:selectablefield:JSONPath=`.spec.podName`
// +kubebuilder:printcolumn:name="Pod",type=string,JSONPath=`.spec.podName`
// +kubebuilder:printcolumn:name="Source",type=string,JSONPath=`.status.sourceNode`
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.status.targetNode`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Downtime",type=string,JSONPath=`.status.downtime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// PodMigration moves a running pod, with its processes' memory, to another
// node: lpm checkpoints the pod's containers, carries the checkpoints to the
// target node and restores them there in a new pod. It lives in the pod's
// namespace.
type PodMigration struct {
	metav1.TypeMeta `json:",inline"`

	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the requested move.
	// +required
	Spec PodMigrationSpec `json:"spec"`

	// status is the observed state of the move.
	// +optional
	Status PodMigrationStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// PodMigrationList is a list of PodMigrations.
type PodMigrationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PodMigration `json:"items"`
}

func init() {
	register(&PodMigration{}, &PodMigrationList{})
}
