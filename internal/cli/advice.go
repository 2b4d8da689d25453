package cli

import (
	"strings"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// adviceByReason maps each condition reason to what it means for the user
// and what to do next. A test checks that every reason in api/v1 has an
// entry.
var adviceByReason = map[lpmv1.Reason]string{
	// A migration in progress, or one that succeeded.
	lpmv1.ReasonPending: "The controller has not processed the migration yet. If it stays Pending, " +
		"check that the lpm controller runs and read its logs.",
	lpmv1.ReasonWaitingForAgents: "The lpm agents of the source and target nodes have not reported " +
		"their checks yet. If this lasts, check that the agent runs on both nodes: kubectl get nodeagents.",
	lpmv1.ReasonWaitingForSlot: "Other migrations use every slot under the controller's concurrency " +
		"limits. This one starts when a slot frees up. See them with kubectl migrate list -A.",
	lpmv1.ReasonInProgress:   "The migration runs. Follow it with kubectl migrate status " + migrationArgs + ".",
	lpmv1.ReasonChecksPassed: "Every preflight check passed.",
	lpmv1.ReasonDryRun: "Every preflight check passed and nothing was changed. " +
		"Run the same command without --dry-run to move the pod.",
	lpmv1.ReasonCheckpointed: "Every container is checkpointed.",
	lpmv1.ReasonImagesReady:  "Every checkpoint image is available to the target node's runtime.",
	lpmv1.ReasonSettling: "The restored pod is Ready. The controller waits for the settle window to pass " +
		"without a container restart before it removes the source pod.",
	lpmv1.ReasonWaitingForNodeLease: "The restored pod stayed Ready through the settle window. The " +
		"controller waits for the target node's kubelet to renew its Lease (every 10 s by default), " +
		"which shows the node still runs, before it removes the source pod.",
	lpmv1.ReasonVerified:      "The restored pod is Ready, restored from its checkpoint and stable.",
	lpmv1.ReasonSourceDeleted: "The source pod was deleted after the restored pod was verified.",
	lpmv1.ReasonSourceDeleting: "The restored pod is verified. The controller deletes the source pod " +
		"and waits until the source node's kubelet has removed it.",
	lpmv1.ReasonSourceKept: "The source pod was kept (--keep), so two copies of the pod run now. " +
		"Delete the source pod when you no longer need it.",
	lpmv1.ReasonMigrationComplete: "The pod runs on the target node. Nothing is left to do.",
	lpmv1.ReasonCleanedUp:         "The agent removed what the migration left on its node.",
	lpmv1.ReasonSourceKilled: "The restored pod is verified, and the frozen source containers are killed: " +
		"they die without running again once the source pod is deleted.",

	// Preflight failures: the source pod was never touched.
	lpmv1.ReasonPodNotFound: "No pod of that name exists in the namespace. Check the name and the " +
		"namespace: kubectl get pods -n NAMESPACE.",
	lpmv1.ReasonPodNotRunning: "Only a Running pod can move. Wait until it runs, or find out why it " +
		"does not with kubectl describe pod.",
	lpmv1.ReasonPodNotReady: "Only a Ready pod can move, because the restored pod is verified by its " +
		"readiness. Wait until the pod is Ready.",
	lpmv1.ReasonPodTerminating:  "The pod is being deleted, so there is nothing to move.",
	lpmv1.ReasonPodNotScheduled: "The pod has no node yet. Wait until it is scheduled and runs.",
	lpmv1.ReasonStaticPod: "The kubelet runs a static pod from a file on its node, and the API cannot " +
		"move it. Move the manifest file to the other node instead.",
	lpmv1.ReasonControllerOwnedPod: "The pod's owner (see the message) would replace the source pod " +
		"or adopt the restored one. Move a pod without such an owner, or scale its workload instead.",
	lpmv1.ReasonUnsupportedVolume: "A volume of the pod cannot follow it to another node (see the " +
		"message). Only pods whose volumes every node can reach can move.",
	lpmv1.ReasonUnsupportedResource: "The pod uses a resource that cannot be checkpointed or moved, " +
		"such as a device (see the message).",
	lpmv1.ReasonHostNamespace: "The pod shares the host's network, PID or IPC namespace, whose state " +
		"cannot move with it. Only pods with their own namespaces can move.",
	lpmv1.ReasonUserNamespace: "The pod runs in a user namespace (hostUsers: false), which a checkpoint " +
		"cannot carry.",
	lpmv1.ReasonUnsupportedHostname: "The pod's hostname comes from its name, which is not a DNS label " +
		"(it contains a dot), and the restored pod could not keep it. Set spec.hostname on the pod, or " +
		"name the pod without dots.",
	lpmv1.ReasonNonRootUnsupported: "A container runs as a user other than root, and CRIU on the source " +
		"node cannot dump such a process: containerd, which runs CRIU, lacks CAP_SYS_RESOURCE. Run " +
		"containerd with that capability, or move pods that run as root. kubectl get nodeagent NODE -o yaml " +
		"shows checkpointNonRoot.",
	lpmv1.ReasonMigrationInProgress: "Another PodMigration moves this pod now. Find it with kubectl " +
		"migrate list --pod, then wait for it or cancel it with kubectl migrate cancel.",
	lpmv1.ReasonTargetNotFound: "No node has the name given with --to. List the nodes with " +
		"kubectl get nodes.",
	lpmv1.ReasonTargetNotReady: "The target node is not Ready. Wait until it is, or pick another node " +
		"with --to.",
	lpmv1.ReasonTargetUnschedulable: "The target node is cordoned. Uncordon it with kubectl uncordon " +
		"NODE, or pick another node with --to.",
	lpmv1.ReasonTargetIsSource: "The pod already runs on the target node. Pick another node with --to.",
	lpmv1.ReasonTargetTaint: "The pod does not tolerate a taint of the target node. Pick another " +
		"node with --to, or add the toleration to the pod.",
	lpmv1.ReasonTargetSelectorMismatch: "The target node does not match the pod's node selector or " +
		"required node affinity. Pick a node that does.",
	lpmv1.ReasonTargetInsufficient: "The target node lacks the free CPU, memory or other resources " +
		"that the pod requests. Pick another node, or free resources on it.",
	lpmv1.ReasonNoTargetNode: "No node passed the checks for this pod (readiness, taints, selectors, " +
		"free resources, a working lpm agent). Name a node with --to to see why it is rejected.",
	lpmv1.ReasonAgentMissing: "A node of the migration has no lpm agent, or its agent stopped " +
		"reporting. Check the agent's pod on that node and kubectl get nodeagents.",
	lpmv1.ReasonAgentCannotCheckpoint: "The source node cannot checkpoint containers: its kubelet " +
		"checkpoint API, runtime or CRIU is missing or off. See kubectl get nodeagent NODE -o yaml.",
	lpmv1.ReasonAgentCannotRestore: "The target node's runtime cannot restore from a checkpoint " +
		"image. See kubectl get nodeagent NODE -o yaml, and pick a node whose RESTORE column is True.",
	lpmv1.ReasonIncompatibleNodes: "The nodes differ in a way that breaks a restore, such as CPU " +
		"features, runtime, CRIU or cgroup version (see the message). Pick a target node like the source.",
	lpmv1.ReasonBaseImageUnavailable: "The target node cannot get a container's base image. Check " +
		"that the image exists and that the node may pull it (registry access, image pull secrets).",
	lpmv1.ReasonUnsupportedProcessState: "A process of the pod uses something that CRIU cannot dump " +
		"(see the message). The pod cannot move while it is in that state.",
	lpmv1.ReasonIOUringInUse: "A process of the pod holds an io_uring instance, which CRIU cannot " +
		"dump. Turn io_uring off in the application (see the message for the process) and restart the " +
		"pod before you move it.",
	lpmv1.ReasonFileWatchUnsupported: "A process of the pod watches files with inotify or fanotify on a " +
		"file system where CRIU cannot reopen the watch, usually the container's overlay root. Watch " +
		"files on a volume instead, or upgrade CRIU on the node.",
	lpmv1.ReasonPidfdUnsupported: "A process of the pod holds a pidfd that CRIU cannot restore: CRIU " +
		"is older than 4.2, or the pidfd refers to a process outside the container. See the message.",
	lpmv1.ReasonMessageQueueInUse: "A process of the pod holds a POSIX message queue open, which CRIU " +
		"cannot dump. Close it before the migration, or use a pipe or socket instead.",
	lpmv1.ReasonControllingTerminal: "A container of the pod has a terminal (tty: true), which the " +
		"runtime cannot restore. Set tty: false and stdin: false on the container.",
	lpmv1.ReasonDeletedFileTooLarge: "A process of the pod holds a deleted file larger than CRIU's " +
		"ghost-file limit (1 MiB unless the node's CRIU configuration raises it). Keep the file on disk " +
		"while it is open, or raise ghost-limit in /etc/criu/runc.conf on the source node.",
	lpmv1.ReasonHostSharedMemory: "A process of the pod uses System V shared memory of the node " +
		"(hostIPC), which cannot move with the pod. Run the pod without hostIPC.",
	lpmv1.ReasonTooManyPipesWithData: "The pod's processes hold more than 1,024 pipes with unread " +
		"data, more than CRIU stores. Let the readers drain their pipes, or hold fewer pipes.",
	lpmv1.ReasonContainerFrozen: "A container's cgroup is already frozen by someone else, and CRIU can " +
		"hang on it. Thaw the container and start the migration again.",
	lpmv1.ReasonVolumeTooLarge: "The pod's emptyDir volumes hold more data than the source agent carries " +
		"(--max-volume-data-bytes, 1 GiB by default). Delete data the pod does not need, or raise " +
		"agent.maxVolumeDataBytes in the chart.",
	lpmv1.ReasonUnsupportedVolumeContent: "An emptyDir volume holds something a migration cannot carry, " +
		"such as a device node or the medium HugePages, or a container is named lpm-volume-restore. Read " +
		"the message, then remove the device node or rename the container.",
	lpmv1.ReasonReadOnlyRootWithoutTmp: "A container sets securityContext.readOnlyRootFilesystem and its " +
		"root file system has no /tmp directory. CRIU restores a container by pivot_root into /tmp of its " +
		"root and cannot create that directory on a read-only root. Mount an emptyDir at /tmp, add a /tmp " +
		"directory to the image, or set readOnlyRootFilesystem to false.",
	lpmv1.ReasonTCPConnectionOpen: "A process of the pod holds an established TCP connection, and the " +
		"source node's CRIU configuration does not set tcp-close, without which CRIU cannot dump it. Set " +
		"tcp-close and skip-in-flight in /etc/criu/runc.conf on every node, or close the connection " +
		"before the migration.",
	lpmv1.ReasonMultipathTCPInUse: "A process of the pod holds a Multipath TCP socket, which CRIU cannot " +
		"dump. Turn Multipath TCP off in the program: for Go 1.24 and later set GODEBUG=multipathtcp=0 " +
		"in the container's environment, then restart the pod.",
	lpmv1.ReasonSharedMemoryFileInUse: "A process of the pod holds or maps a file of the pod's /dev/shm " +
		"(POSIX shared memory), which does not travel: the restored pod gets an empty /dev/shm. Close " +
		"and unmap the file before the migration, or mount a memory-backed emptyDir volume at /dev/shm.",
	lpmv1.ReasonVolumeFileInUse: "A process of the pod holds or maps a file of a configMap, secret, " +
		"downwardAPI or projected volume. The kubelet writes such a volume into a directory named after " +
		"the time of writing, which has another name in the restored pod. Close the file after reading " +
		"it, or mount the file with subPath.",
	lpmv1.ReasonIncompatibleCRIU: "The target node's CRIU cannot restore what the source node's CRIU " +
		"dumps: it is older, or lacks a feature the source's configuration uses (see the message). " +
		"Pick a target with the same or a newer CRIU.",
	lpmv1.ReasonIncompatibleRuntime: "The two nodes run containers with different OCI runtimes (for " +
		"example runc and crun), whose checkpoints do not restore on each other. Pick a target node " +
		"with the source's runtime.",
	lpmv1.ReasonRseqUnsupported: "The pod's processes may use rseq (glibc 2.35 and later register it), " +
		"and the target node's kernel or CRIU cannot restore it. Pick a target with a kernel of 5.13 or " +
		"later, or set GLIBC_TUNABLES=glibc.pthread.rseq=0 in the pod.",
	lpmv1.ReasonCgroupRestoreUnsupported: "The target node's OCI runtime restores processes into the " +
		"cgroup recorded at checkpoint, not into the new pod's, so the kubelet would kill them. Upgrade " +
		"the runtime on the target node or pick another node.",
	lpmv1.ReasonCRIUConfigUnsupported: "A CRIU configuration file on a node (such as " +
		"/etc/criu/runc.conf) sets an option that changes what a checkpoint contains or where it goes " +
		"(see the message). Remove the option from that file.",
	lpmv1.ReasonBaseImageMismatch: "The target node would restore a container onto another image than " +
		"the one it was checkpointed on, because the image's tag now points elsewhere. Pin the pod's " +
		"image by digest, or make the target node hold the image the source runs.",
	lpmv1.ReasonProcessOutsidePodCgroup: "A restored process lives in another cgroup than the restored " +
		"pod's, so the kubelet would not account for it or would kill it. The migration was rolled back. " +
		"Check the target node's runtime and CRIU configuration (manage-cgroups).",
	lpmv1.ReasonNetworkLockLeft: "A netfilter chain that CRIU adds to lock the network during a dump " +
		"or restore remained in the restored pod's network namespace, so the pod's network is cut. The " +
		"migration was rolled back. Read the CRIU restore log whose path the status names.",

	// Failures after the preflight checks: the migration was rolled back.
	lpmv1.ReasonCheckpointAPIDisabled: "The kubelet's checkpoint API is off on the source node. " +
		"Enable the kubelet's ContainerCheckpoint feature gate there.",
	lpmv1.ReasonPodGone: "The source pod was deleted during the migration, so nothing is left to " +
		"move. Find out what deleted it before you try again.",
	lpmv1.ReasonContainerGone: "A container of the source pod stopped or was replaced during the " +
		"checkpoint. Try again when the pod is stable.",
	lpmv1.ReasonRuntimeCannotCheckpoint: "The container runtime on the source node rejected the " +
		"checkpoint (see the message). It needs CRIU and checkpoint support enabled in its CRI plugin.",
	lpmv1.ReasonCheckpointTimedOut: "The checkpoint took longer than spec.timeouts.checkpoint. A pod " +
		"with much memory takes longer to dump: create the PodMigration with a larger timeout.",
	lpmv1.ReasonKubeletUnauthorized: "The kubelet rejected the agent's checkpoint request. Grant the " +
		"agent's service account create on nodes/checkpoint.",
	lpmv1.ReasonKubeletUnavailable: "The agent could not reach the kubelet of the source node. Check " +
		"that the kubelet runs and that the agent can reach its port.",
	lpmv1.ReasonCheckpointFailed: "CRIU failed to dump a container. Read the CRIU log on the source " +
		"node: kubectl migrate status " + migrationArgs + " shows its path.",
	lpmv1.ReasonAgentRestarted: "The source node's lpm agent restarted during the checkpoint, which it " +
		"never resumes, so it thawed the source. Find out why the agent restarted (kubectl -n lpm-system " +
		"logs --previous of its pod on that node), then start the migration again.",
	lpmv1.ReasonNodeDiskFull: "A disk of a node of the migration ran full (the message names the node " +
		"and the path): the kubelet's checkpoint directory, containerd's root or the agent's state " +
		"directory /var/lib/lpm. Free space there and start the migration again. A checkpoint needs about " +
		"the pod's memory in free space in the checkpoint directory and again under containerd's root.",
	lpmv1.ReasonArchiveInvalid: "The checkpoint archive that the kubelet wrote could not be read. " +
		"Try again, and read the source agent's logs if it repeats.",
	lpmv1.ReasonImageBuildFailed: "The source agent could not build a checkpoint image, for example " +
		"because its disk is full. Read the source agent's logs.",
	lpmv1.ReasonTransferFailed: "The checkpoint images did not reach the target node. Check the " +
		"network between the two agents (transfer direct), or the registry and its credentials " +
		"(transfer registry).",
	lpmv1.ReasonDigestMismatch: "A checkpoint image reached the target node with another digest than " +
		"the source published, so it was damaged or altered on the way. Try again, and check the " +
		"network path if it repeats.",
	lpmv1.ReasonImportFailed: "The target node's runtime did not import a checkpoint image. Read the " +
		"target agent's logs and check the node's free disk space.",
	lpmv1.ReasonTransferTimedOut: "Building, carrying or importing the images took longer than " +
		"spec.timeouts.transfer. Create the PodMigration with a larger timeout for large pods or slow links.",
	lpmv1.ReasonRestoredPodFailed: "The restored pod failed on the target node, and the rollback deleted " +
		"it. The message holds the runtime's or CRIU's error lines. The kubelet's events of the restored " +
		"pod remain after the rollback: kubectl get events in the pod's namespace lists them.",
	lpmv1.ReasonNotRestored: "The target runtime started a container fresh instead of restoring its " +
		"checkpoint, so its memory was lost. Check that the target node's runtime restores from " +
		"checkpoint images (the RESTORE column of kubectl get nodeagents).",
	lpmv1.ReasonContainerRestarted: "A container of the restored pod restarted during the settle " +
		"window, so the restored state is not trusted. Read the restored container's logs.",
	lpmv1.ReasonRestoreTimedOut: "The restored pod was not verified within spec.timeouts.restore. " +
		"Find out why it did not become Ready with kubectl describe pod.",
	lpmv1.ReasonRestoreCheckFailed: "The target agent could not ask the runtime whether it restored " +
		"the containers. Read the target agent's logs.",
	lpmv1.ReasonSourceChanged: "The pod of that name is not the pod the migration started with (its " +
		"UID changed). Start a new migration for the new pod.",
	lpmv1.ReasonAgentUnavailable: "An lpm agent stopped reporting during the migration. Check the " +
		"agents' pods on both nodes.",
	lpmv1.ReasonDeadlineExceeded: "The migration took longer than its overall timeout (--timeout). " +
		"See which phase took longest with kubectl migrate status " + migrationArgs + ", and raise the timeout.",
	lpmv1.ReasonCancelled: "The PodMigration was deleted before it finished, so it was rolled back.",
	lpmv1.ReasonInternalError: "lpm hit an unexpected error. When the message starts with \"source agent\" " +
		"or \"target agent\", read the lpm agent's log on the node it names; otherwise read the controller's " +
		"logs.",
	lpmv1.ReasonLivenessProbeDeadline: "The source pod's liveness probes fail while its containers are " +
		"frozen, and the kubelet would have killed them before the migration could finish, so the source " +
		"agent stopped it in time and thawed them. Relax the liveness probes (period, failure threshold) " +
		"or move a pod with less memory, which freezes for less time.",
	lpmv1.ReasonCleanupTimedOut: "An agent did not report that it cleaned up within the controller's " +
		"cleanup deadline, so the controller went on without it. The agent's garbage collection removes " +
		"what is left. Read the agent's logs if this repeats.",
}

// migrationArgs is the placeholder in the advice for the arguments that name
// the migration in a kubectl migrate command. adviceFor fills them in.
const migrationArgs = "{migration}"

// adviceFor returns what the user should do about reason, with pm's name
// and namespace in the commands it suggests. pm is nil where no
// PodMigration remains, as in the local checks and after a check's dry
// run: the sentences that point to the migration are then left out. A
// reason that this version of the plugin does not know gets a pointer to
// the details.
func adviceFor(reason lpmv1.Reason, pm *lpmv1.PodMigration) string {
	advice, ok := adviceByReason[reason]
	if !ok {
		advice = "Read the message above, and the details with kubectl migrate status " + migrationArgs + "."
	}
	if pm != nil {
		return strings.ReplaceAll(advice, migrationArgs, pm.Name+" -n "+pm.Namespace)
	}
	var remaining []string
	for _, sentence := range strings.SplitAfter(advice, ". ") {
		if !strings.Contains(sentence, migrationArgs) {
			remaining = append(remaining, sentence)
		}
	}
	if len(remaining) == 0 {
		return "Read the message above."
	}
	return strings.TrimSpace(strings.Join(remaining, ""))
}
