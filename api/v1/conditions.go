package v1

// Condition types of a PodMigration, written by the controller.
const (
	// ConditionPreflightPassed is True when every check before the
	// checkpoint passed, the agents' checks included.
	ConditionPreflightPassed = "PreflightPassed"
	// ConditionCheckpointed is True when every container is checkpointed.
	ConditionCheckpointed = "Checkpointed"
	// ConditionImagesReady is True when every checkpoint image is available
	// to the target node's runtime.
	ConditionImagesReady = "ImagesReady"
	// ConditionRestored is True when the restored pod passed verification:
	// Ready, every container restored by the runtime, no restart during the
	// settle window.
	ConditionRestored = "Restored"
	// ConditionSourceRemoved is True when the source pod was deleted, and
	// False with reason SourceKept for sourcePolicy Keep.
	ConditionSourceRemoved = "SourceRemoved"
	// ConditionSucceeded is the summary: True on success, False on failure
	// (with the failure's reason), Unknown while the migration runs.
	ConditionSucceeded = "Succeeded"
)

// Condition types of the agents' parts of a PodMigration's status.
const (
	// AgentConditionPrepared is True when the agent's checks before the
	// checkpoint passed: the source can be checkpointed, or the target can
	// restore it (base images present or pullable, restore enabled).
	AgentConditionPrepared = "Prepared"
	// AgentConditionCheckpointed is True when the source agent has
	// checkpointed every container.
	AgentConditionCheckpointed = "Checkpointed"
	// AgentConditionImagesServed is True when the source agent has built
	// every checkpoint image and serves or has pushed it.
	AgentConditionImagesServed = "ImagesServed"
	// AgentConditionImagesReady is True when the target agent has imported
	// every checkpoint image and the runtime's CRI reports it.
	AgentConditionImagesReady = "ImagesReady"
	// AgentConditionRestored is True when the target agent has seen the
	// runtime report every container of the restored pod as restored.
	AgentConditionRestored = "Restored"
	// AgentConditionKilled is True when the source agent has sent SIGKILL
	// to every process of the frozen source after verification. The
	// processes stay frozen with the signal pending until the source pod
	// is deleted, and die without running when the agent thaws them.
	AgentConditionKilled = "Killed"
	// AgentConditionCleanedUp is True when the agent has removed what the
	// migration left on its node and, on the source, thawed the pod.
	AgentConditionCleanedUp = "CleanedUp"
)

// Reason is a machine-readable, PascalCase explanation for a condition and
// the matching event.
type Reason string

// Reasons while a migration progresses or after it succeeds.
const (
	ReasonPending          Reason = "Pending"
	ReasonWaitingForAgents Reason = "WaitingForAgents"
	ReasonWaitingForSlot   Reason = "WaitingForSlot"
	ReasonInProgress       Reason = "InProgress"
	ReasonChecksPassed     Reason = "ChecksPassed"
	ReasonDryRun           Reason = "DryRun"
	ReasonCheckpointed     Reason = "Checkpointed"
	ReasonImagesReady      Reason = "ImagesReady"
	ReasonSettling         Reason = "Settling"
	// ReasonWaitingForNodeLease: the settle window has passed, and the
	// controller waits for the target node's kubelet to renew its Lease,
	// which shows that the node still ran after the window.
	ReasonWaitingForNodeLease Reason = "WaitingForNodeLease"
	ReasonVerified            Reason = "Verified"
	ReasonSourceDeleted       Reason = "SourceDeleted"
	ReasonSourceKept          Reason = "SourceKept"
	ReasonMigrationComplete   Reason = "MigrationComplete"
	ReasonCleanedUp           Reason = "CleanedUp"
	ReasonSourceKilled        Reason = "SourceKilled"
	ReasonSourceDeleting      Reason = "SourceDeleting"
)

// Reasons a pod or target node fails the preflight checks. The source pod is
// untouched in every case.
const (
	ReasonPodNotFound             Reason = "PodNotFound"
	ReasonPodNotRunning           Reason = "PodNotRunning"
	ReasonPodNotReady             Reason = "PodNotReady"
	ReasonPodTerminating          Reason = "PodTerminating"
	ReasonPodNotScheduled         Reason = "PodNotScheduled"
	ReasonStaticPod               Reason = "StaticPod"
	ReasonControllerOwnedPod      Reason = "ControllerOwnedPod"
	ReasonUnsupportedVolume       Reason = "UnsupportedVolume"
	ReasonUnsupportedResource     Reason = "UnsupportedResource"
	ReasonHostNamespace           Reason = "HostNamespace"
	ReasonUserNamespace           Reason = "UserNamespace"
	ReasonUnsupportedHostname     Reason = "UnsupportedHostname"
	ReasonNonRootUnsupported      Reason = "NonRootUnsupported"
	ReasonMigrationInProgress     Reason = "MigrationInProgress"
	ReasonTargetNotFound          Reason = "TargetNotFound"
	ReasonTargetNotReady          Reason = "TargetNotReady"
	ReasonTargetUnschedulable     Reason = "TargetUnschedulable"
	ReasonTargetIsSource          Reason = "TargetIsSource"
	ReasonTargetTaint             Reason = "TargetTaintNotTolerated"
	ReasonTargetSelectorMismatch  Reason = "TargetSelectorMismatch"
	ReasonTargetInsufficient      Reason = "TargetInsufficientResources"
	ReasonNoTargetNode            Reason = "NoTargetNode"
	ReasonAgentMissing            Reason = "AgentMissing"
	ReasonAgentCannotCheckpoint   Reason = "AgentCannotCheckpoint"
	ReasonAgentCannotRestore      Reason = "AgentCannotRestore"
	ReasonIncompatibleNodes       Reason = "IncompatibleNodes"
	ReasonBaseImageUnavailable    Reason = "BaseImageUnavailable"
	ReasonUnsupportedProcessState Reason = "UnsupportedProcessState"
	// ReasonReadOnlyRootWithoutTmp: a container's root file system is
	// read-only (readOnlyRootFilesystem) and has no /tmp directory, which
	// CRIU needs to restore it.
	ReasonReadOnlyRootWithoutTmp Reason = "ReadOnlyRootWithoutTmp"
)

// Reasons a migration fails after the preflight checks. Each one rolls the
// migration back: the source pod runs on as before.
const (
	ReasonCheckpointAPIDisabled   Reason = "CheckpointAPIDisabled"
	ReasonPodGone                 Reason = "PodGone"
	ReasonContainerGone           Reason = "ContainerGone"
	ReasonRuntimeCannotCheckpoint Reason = "RuntimeCannotCheckpoint"
	ReasonCheckpointTimedOut      Reason = "CheckpointTimedOut"
	ReasonKubeletUnauthorized     Reason = "KubeletUnauthorized"
	ReasonKubeletUnavailable      Reason = "KubeletUnavailable"
	ReasonCheckpointFailed        Reason = "CheckpointFailed"
	ReasonArchiveInvalid          Reason = "ArchiveInvalid"
	ReasonImageBuildFailed        Reason = "ImageBuildFailed"
	ReasonTransferFailed          Reason = "TransferFailed"
	ReasonDigestMismatch          Reason = "DigestMismatch"
	ReasonImportFailed            Reason = "ImportFailed"
	ReasonTransferTimedOut        Reason = "TransferTimedOut"
	ReasonRestoredPodFailed       Reason = "RestoredPodFailed"
	ReasonNotRestored             Reason = "NotRestored"
	ReasonContainerRestarted      Reason = "ContainerRestarted"
	ReasonRestoreTimedOut         Reason = "RestoreTimedOut"
	ReasonRestoreCheckFailed      Reason = "RestoreCheckFailed"
	ReasonSourceChanged           Reason = "SourceChanged"
	ReasonAgentUnavailable        Reason = "AgentUnavailable"
	ReasonDeadlineExceeded        Reason = "DeadlineExceeded"
	ReasonCancelled               Reason = "Cancelled"
	ReasonInternalError           Reason = "InternalError"
	ReasonCleanupTimedOut         Reason = "CleanupTimedOut"
	// ReasonNodeDiskFull: a disk of a node of the migration ran full, such
	// as the kubelet's checkpoint directory, containerd's root or the
	// agent's state directory. The message names the node and the path.
	ReasonNodeDiskFull Reason = "NodeDiskFull"
	// ReasonAgentRestarted: the source agent restarted during the
	// checkpoint, which it never resumes, and thawed the source.
	ReasonAgentRestarted Reason = "AgentRestarted"
	// ReasonLivenessProbeDeadline: the source's liveness probes would have
	// made the kubelet kill its frozen containers before the migration
	// could finish, so the source agent gave up in time to thaw them.
	ReasonLivenessProbeDeadline Reason = "LivenessProbeDeadline"
)

// Reasons the source agent's scan of the pod's processes rejects a
// migration before the checkpoint: each names an object that the source
// node's CRIU cannot dump or restore. The source pod is untouched.
const (
	// ReasonIOUringInUse: a process holds an io_uring instance.
	ReasonIOUringInUse Reason = "IOUringInUse"
	// ReasonFileWatchUnsupported: a process holds an inotify or fanotify
	// watch that CRIU cannot reopen, such as one on the overlay root.
	ReasonFileWatchUnsupported Reason = "FileWatchUnsupported"
	// ReasonPidfdUnsupported: a process holds a pidfd CRIU cannot restore.
	ReasonPidfdUnsupported Reason = "PidfdUnsupported"
	// ReasonMessageQueueInUse: a process holds a POSIX message queue.
	ReasonMessageQueueInUse Reason = "MessageQueueInUse"
	// ReasonControllingTerminal: a process has a controlling terminal.
	ReasonControllingTerminal Reason = "ControllingTerminal"
	// ReasonDeletedFileTooLarge: a process holds a deleted file larger than
	// CRIU's ghost-file limit.
	ReasonDeletedFileTooLarge Reason = "DeletedFileTooLarge"
	// ReasonHostSharedMemory: a process has System V shared memory of the
	// node's IPC namespace attached.
	ReasonHostSharedMemory Reason = "HostSharedMemory"
	// ReasonTooManyPipesWithData: a container holds more pipes with unread
	// data than CRIU stores.
	ReasonTooManyPipesWithData Reason = "TooManyPipesWithData"
	// ReasonContainerFrozen: a container's cgroup is already frozen.
	ReasonContainerFrozen Reason = "ContainerFrozen"
	// ReasonTCPConnectionOpen: a process holds an established TCP
	// connection, and the node's CRIU configuration does not set tcp-close.
	ReasonTCPConnectionOpen Reason = "TCPConnectionOpen"
	// ReasonMultipathTCPInUse: a process holds a Multipath TCP socket,
	// which CRIU cannot dump.
	ReasonMultipathTCPInUse Reason = "MultipathTCPInUse"
	// ReasonSharedMemoryFileInUse: a process holds or maps a file of the
	// pod sandbox's /dev/shm, which the restored pod gets empty.
	ReasonSharedMemoryFileInUse Reason = "SharedMemoryFileInUse"
	// ReasonVolumeFileInUse: a process holds or maps a file of a configMap,
	// secret, downwardAPI or projected volume by a path that the restored
	// pod's volume lacks.
	ReasonVolumeFileInUse Reason = "VolumeFileInUse"
)

// Reasons the source agent rejects a pod's emptyDir volumes, before the
// checkpoint or, when the contents changed since, at the cut. The source
// pod runs on untouched.
const (
	// ReasonVolumeTooLarge: the emptyDir volumes hold more data than the
	// source agent's --max-volume-data-bytes allows.
	ReasonVolumeTooLarge Reason = "VolumeTooLarge"
	// ReasonUnsupportedVolumeContent: an emptyDir volume holds something
	// the migration cannot carry, such as a device node, or the agent
	// cannot carry volumes at all.
	ReasonUnsupportedVolumeContent Reason = "UnsupportedVolumeContent"
)

// Reasons the controller's comparison of the source and target nodes
// rejects a migration before the checkpoint. The source pod is untouched.
const (
	// ReasonIncompatibleCRIU: the target's CRIU is older than the source's
	// or lacks a CRIU feature the source's configuration relies on.
	ReasonIncompatibleCRIU Reason = "IncompatibleCRIU"
	// ReasonIncompatibleRuntime: the nodes use different OCI runtimes.
	ReasonIncompatibleRuntime Reason = "IncompatibleRuntime"
	// ReasonRseqUnsupported: the source's processes may use rseq and the
	// target's kernel or CRIU cannot restore it.
	ReasonRseqUnsupported Reason = "RseqUnsupported"
	// ReasonCgroupRestoreUnsupported: the target's OCI runtime cannot
	// restore into the new container's cgroup.
	ReasonCgroupRestoreUnsupported Reason = "CgroupRestoreUnsupported"
	// ReasonCRIUConfigUnsupported: a node's CRIU configuration file sets an
	// option that changes what a checkpoint contains or where it goes.
	ReasonCRIUConfigUnsupported Reason = "CRIUConfigUnsupported"
)

// Reasons of the checks on images and on the restored pod. Each one rolls
// the migration back.
const (
	// ReasonBaseImageMismatch: the target would restore onto another image
	// than the one the checkpoint was taken on.
	ReasonBaseImageMismatch Reason = "BaseImageMismatch"
	// ReasonProcessOutsidePodCgroup: a restored process lives in another
	// cgroup than the restored pod's.
	ReasonProcessOutsidePodCgroup Reason = "ProcessOutsidePodCgroup"
	// ReasonNetworkLockLeft: a netfilter chain that CRIU adds to lock the
	// network remains in the restored pod's network namespace.
	ReasonNetworkLockLeft Reason = "NetworkLockLeft"
)
