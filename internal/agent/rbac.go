package agent

// The agent's permissions. The kubelet authorises the checkpoint call as
// the nodes/checkpoint subresource. The agent gets that and nothing broader
// on nodes: never nodes/proxy, which reaches every kubelet API.
// Reading Secrets for registry transfers is not here: it is a separate
// role (config/rbac/agent/registry_credentials_role.yaml) that a namespace
// grants the agent only if it uses transfer mode Registry with a pull
// secret.
//
// +kubebuilder:rbac:groups="",resources=nodes/checkpoint,verbs=create
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups=lpm.dev,resources=podmigrations,verbs=get;list;watch
// +kubebuilder:rbac:groups=lpm.dev,resources=podmigrations/status,verbs=get;patch
// +kubebuilder:rbac:groups=lpm.dev,resources=nodeagents,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups=lpm.dev,resources=nodeagents/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create
