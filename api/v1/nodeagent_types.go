package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types of a NodeAgent.
const (
	// NodeAgentReady is True while the agent runs and renews heartbeatTime.
	NodeAgentReady = "Ready"
	// NodeAgentCheckpointSupported is True when the node can checkpoint
	// containers: the kubelet's checkpoint API answers, the runtime
	// implements CheckpointContainer, CRIU is present and new enough, and
	// the agent may create nodes/checkpoint.
	NodeAgentCheckpointSupported = "CheckpointSupported"
	// NodeAgentRestoreSupported is True when the node's runtime restores a
	// container from a checkpoint image in CreateContainer.
	NodeAgentRestoreSupported = "RestoreSupported"
)

// NodeAgentStatus is what the agent of one node publishes about it.
type NodeAgentStatus struct {
	// conditions are Ready, CheckpointSupported and RestoreSupported.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// heartbeatTime is when the agent last confirmed that it runs.
	// +optional
	HeartbeatTime *metav1.Time `json:"heartbeatTime,omitempty"`

	// agentVersion is the version of the lpm agent.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	AgentVersion string `json:"agentVersion,omitempty"`

	// endpoint is the host:port of the agent's image transfer server.
	// +optional
	// +kubebuilder:validation:MaxLength=261
	Endpoint string `json:"endpoint,omitempty"`

	// servingCertificateSHA256 is the hex SHA-256 digest of the DER form of
	// the transfer server's certificate. Peers pin it.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	ServingCertificateSHA256 string `json:"servingCertificateSHA256,omitempty"`

	// capabilities describe the node's runtime, CRIU and kernel.
	// +optional
	Capabilities *NodeCapabilities `json:"capabilities,omitempty"`
}

// NodeCapabilities describe what a node can checkpoint and restore.
type NodeCapabilities struct {
	// runtimeName is the container runtime's name, for example containerd.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	RuntimeName string `json:"runtimeName,omitempty"`

	// runtimeVersion is the container runtime's version.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	RuntimeVersion string `json:"runtimeVersion,omitempty"`

	// ociRuntime is the OCI runtime that runs containers, for example runc.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	OCIRuntime string `json:"ociRuntime,omitempty"`

	// ociRuntimeVersion is the OCI runtime's version.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	OCIRuntimeVersion string `json:"ociRuntimeVersion,omitempty"`

	// criuVersion is the version of CRIU the runtime uses, empty when CRIU
	// is missing.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	CRIUVersion string `json:"criuVersion,omitempty"`

	// criuFeatures lists the optional CRIU features the node supports, as
	// CRIU reports them.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=64
	CRIUFeatures []string `json:"criuFeatures,omitempty"`

	// kernelVersion is the running kernel's release.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	KernelVersion string `json:"kernelVersion,omitempty"`

	// cgroupVersion is 1 or 2.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=2
	CgroupVersion int32 `json:"cgroupVersion,omitempty"`

	// cpuFeatures lists the CPU's feature flags. A process restored on a
	// CPU that lacks a feature it uses dies with SIGILL.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=512
	// +kubebuilder:validation:items:MaxLength=64
	CPUFeatures []string `json:"cpuFeatures,omitempty"`

	// checkpointNonRoot is true when CRIU on this node can dump a process
	// that runs as a user other than root. It needs CAP_SYS_RESOURCE.
	// +optional
	CheckpointNonRoot bool `json:"checkpointNonRoot,omitempty"`

	// checkpointAuthorized is true when the agent's own identity may create
	// nodes/checkpoint, as a SelfSubjectAccessReview reported.
	// +optional
	CheckpointAuthorized bool `json:"checkpointAuthorized,omitempty"`

	// rseqRestore is true when CRIU on this node can dump and restore a
	// process that registered restartable sequences (rseq), as glibc 2.35
	// and later do at start: the kernel has the rseq system call and
	// PTRACE_GET_RSEQ_CONFIGURATION (Linux 5.13), and CRIU is 3.17 or later.
	// +optional
	RseqRestore bool `json:"rseqRestore,omitempty"`

	// restoreIntoNewCgroup is true when the OCI runtime restores processes
	// into the cgroup of the new container rather than the one recorded at
	// checkpoint, and no CRIU configuration file overrides that. Unset when
	// the agent does not report it.
	// +optional
	RestoreIntoNewCgroup *bool `json:"restoreIntoNewCgroup,omitempty"`

	// tcpClose is true when the node's CRIU configuration sets tcp-close.
	// A checkpoint then leaves out the state of established TCP
	// connections, and the restore closes them, which suits a migration:
	// the restored pod has another address, so no connection could
	// continue. Without it CRIU cannot dump a process that holds an
	// established connection. CRIU restores a checkpoint taken with
	// tcp-close only on a node that sets it too.
	// +optional
	TCPClose bool `json:"tcpClose,omitempty"`

	// criuConfig lists the CRIU configuration files on the node that the
	// runtime's CRIU reads, with their options.
	// +optional
	// +listType=map
	// +listMapKey=path
	// +kubebuilder:validation:MaxItems=4
	CRIUConfig []CRIUConfigFile `json:"criuConfig,omitempty"`
}

// CRIUConfigFile is one CRIU configuration file and its options.
type CRIUConfigFile struct {
	// path is the file's path on the node, for example /etc/criu/runc.conf.
	// +required
	// +kubebuilder:validation:MaxLength=256
	Path string `json:"path"`

	// options are the file's options without leading dashes, each as
	// "name" or "name=value", for example "tcp-close" or "ghost-limit=10M".
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=512
	Options []string `json:"options,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=na,categories=lpm
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Checkpoint",type=string,JSONPath=`.status.conditions[?(@.type=="CheckpointSupported")].status`
// +kubebuilder:printcolumn:name="Restore",type=string,JSONPath=`.status.conditions[?(@.type=="RestoreSupported")].status`
// +kubebuilder:printcolumn:name="Runtime",type=string,JSONPath=`.status.capabilities.runtimeVersion`
// +kubebuilder:printcolumn:name="CRIU",type=string,JSONPath=`.status.capabilities.criuVersion`
// +kubebuilder:printcolumn:name="Heartbeat",type=date,JSONPath=`.status.heartbeatTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// NodeAgent is what the lpm agent of one node publishes about it: whether
// the node can checkpoint and restore, and where its transfer server
// listens. Its name is the node's name. Only that node's agent writes it.
type NodeAgent struct {
	metav1.TypeMeta `json:",inline"`

	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// status is what the agent observed on its node.
	// +optional
	Status NodeAgentStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// NodeAgentList is a list of NodeAgents.
type NodeAgentList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NodeAgent `json:"items"`
}

func init() {
	register(&NodeAgent{}, &NodeAgentList{})
}
