package controller

import (
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// LeaderElectionID names the Lease that the controller's replicas compete
// for. It must not change between releases, or two versions would lead at
// once during an upgrade. The leader election Role in config/rbac/controller
// grants get and update on this name only.
const LeaderElectionID = "lpm-controller.lpm.dev"

// ManagerConfig holds the settings of lpm-controller's manager that its flags set.
type ManagerConfig struct {
	// MetricsAddr is the address of the HTTPS metrics endpoint; "0"
	// disables it.
	MetricsAddr string
	// MetricsCertDir contains the metrics endpoint's certificate and key,
	// tls.crt and tls.key. Without them the endpoint serves a self-signed
	// certificate that it generates at start.
	MetricsCertDir string
	// ProbeAddr is the address of /healthz and /readyz; "0" disables them.
	ProbeAddr string
	// LeaderElection makes the replicas elect a leader with the Lease
	// LeaderElectionID.
	LeaderElection bool
	// LeaderElectionNamespace is the Lease's namespace. When empty, the
	// manager uses the namespace of the pod's service account.
	LeaderElectionNamespace string
}

// ManagerOptions returns the options of lpm-controller's manager. The
// metrics endpoint serves HTTPS and lets a request through only with a
// bearer token that the API server authenticates (TokenReview) and
// authorizes for GET /metrics (SubjectAccessReview).
func ManagerOptions(scheme *runtime.Scheme, c ManagerConfig) ctrl.Options {
	return ctrl.Options{
		Scheme: scheme,
		Metrics: metricsserver.Options{
			BindAddress:    c.MetricsAddr,
			SecureServing:  true,
			CertDir:        c.MetricsCertDir,
			FilterProvider: filters.WithAuthenticationAndAuthorization,
		},
		HealthProbeBindAddress:        c.ProbeAddr,
		LeaderElection:                c.LeaderElection,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       c.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		// The controller watches every pod; their managed fields are the
		// largest part of them and it never reads them.
		Cache: cache.Options{
			DefaultTransform: cache.TransformStripManagedFields(),
			ByObject:         CacheByObject(),
		},
	}
}

// CacheByObject returns the per-kind options that the controller's cache
// needs: it caches Leases only in kube-node-lease, where each kubelet
// renews its node's Lease, and not the leader election Leases of every
// other component.
func CacheByObject() map[client.Object]cache.ByObject {
	return map[client.Object]cache.ByObject{
		&coordinationv1.Lease{}: {Namespaces: map[string]cache.Config{corev1.NamespaceNodeLease: {}}},
	}
}
