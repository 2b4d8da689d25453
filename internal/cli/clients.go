package cli

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// Client-side rate limits. A node check creates, watches and deletes one
// PodMigration per pod, which client-go's default of 5 requests per second
// would stretch to minutes on a busy node.
const (
	clientQPS   = 50
	clientBurst = 100
)

// scheme registers the built-in kinds and lpm.dev/v1.
var scheme = newScheme()

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(lpmv1.AddToScheme(s))
	return s
}

// clients are the API clients of one command invocation, built on first use
// from the kubeconfig flags.
type clients struct {
	config    *rest.Config
	client    client.WithWatch
	discovery discovery.DiscoveryInterface
}

// getClients builds the clients from the kubeconfig flags once per command.
func (o *rootOptions) getClients() (*clients, error) {
	if o.clients != nil {
		return o.clients, nil
	}

	cfg, err := o.configFlags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("failed to load the kubeconfig: %w", err)
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS = clientQPS
	cfg.Burst = clientBurst
	cfg.UserAgent = "kubectl-migrate/" + clientVersion()

	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("failed to create the API client: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("failed to create the discovery client: %w", err)
	}

	o.clients = &clients{config: cfg, client: c, discovery: dc}
	return o.clients, nil
}

// namespace returns the namespace of the request: the --namespace flag, or
// else the namespace of the kubeconfig's current context, or else
// "default". explicit is true when the --namespace flag set it.
func (o *rootOptions) namespace() (ns string, explicit bool, err error) {
	ns, explicit, err = o.configFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", false, fmt.Errorf("failed to read the namespace from the kubeconfig: %w", err)
	}
	return ns, explicit, nil
}
