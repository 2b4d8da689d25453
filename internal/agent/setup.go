package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/containerd/platforms"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/lpm-dev/lpm/internal/agent/capabilities"
	"github.com/lpm-dev/lpm/internal/agent/runtime"
	"github.com/lpm-dev/lpm/internal/agent/state"
	"github.com/lpm-dev/lpm/internal/agent/transfer"
)

// Config is everything the agent's process is configured with.
type Config struct {
	Options
	// StateDir holds the per-migration records, the CRIU logs and the
	// transfer certificate with its key (mode 0700).
	StateDir string
	// ContainerdSocket is containerd's socket.
	ContainerdSocket string
	// TransferListen is the address the transfer server listens on.
	TransferListen string
	// TransferTokenFile holds the agent's projected token of
	// TransferAudience, sent to source agents.
	TransferTokenFile string
	TransferAudience  string
	// PeerUsers are the user names of the agents' service account that the
	// transfer server accepts.
	PeerUsers []string
	// InsecureRegistries are reached over plain HTTP when pushing.
	InsecureRegistries []string
	// Checkpointer is the kubelet client (or, in tests, another way to
	// reach the runtime's CheckpointContainer).
	Checkpointer Checkpointer
	// Kubelet, when set, is probed for the checkpoint API.
	Kubelet interface {
		ProbeCheckpointAPI(ctx context.Context) error
	}
	// Heartbeat, ProbeInterval and GCInterval set the NodeAgent heartbeat,
	// the capability probe and the garbage collection periods.
	Heartbeat     time.Duration
	ProbeInterval time.Duration
	GCInterval    time.Duration
	Clock         clock.Clock
}

// Setup builds the agent and adds it, its transfer server, NodeAgent
// publisher and garbage collector to the manager. It returns the runtime
// connection, which the caller closes after the manager stops.
func Setup(ctx context.Context, mgr manager.Manager, cfg Config) (*runtime.Runtime, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Platform.OS == "" {
		cfg.Platform = platforms.DefaultSpec()
	}
	store, err := state.Open(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	rt, err := runtime.Connect(ctx, cfg.ContainerdSocket)
	if err != nil {
		return nil, err
	}
	identity, err := transferIdentity(ctx, cfg.StateDir, cfg.NodeName, cfg.Clock.Now())
	if err != nil {
		return nil, err
	}
	clientset, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return nil, fmt.Errorf("failed to create a Kubernetes client: %w", err)
	}

	offers := &transfer.OfferSet{}
	a := New(Deps{
		Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Runtime: rt, Checkpointer: cfg.Checkpointer,
		Store: store, Offers: offers, Fetcher: transfer.NewClient(identity, cfg.TransferTokenFile, cfg.Clock),
		Pusher: &transfer.Pusher{Insecure: cfg.InsecureRegistries}, Clock: cfg.Clock,
	}, cfg.Options)

	// Collect before serving: a migration that ended while the agent was
	// down gets its containers thawed or killed first.
	gc := &GarbageCollector{Agent: a, Interval: cfg.GCInterval}
	if err := mgr.Add(gc); err != nil {
		return nil, err
	}
	if err := a.SetupWithManager(mgr); err != nil {
		return nil, err
	}

	server := transfer.NewServer(identity,
		transfer.NewTokenReviewer(clientset.AuthenticationV1().TokenReviews(), cfg.TransferAudience, cfg.PeerUsers,
			cfg.Clock),
		// The API server, not the cache: a peer that just started, or made a
		// new certificate, is authenticated by what its NodeAgent publishes now.
		&Fingerprints{Client: mgr.GetAPIReader()},
		&Catalog{Client: mgr.GetClient(), Offers: offers, Store: store, NodeName: cfg.NodeName},
		cfg.Clock, ctrl.Log.WithName("transfer")).
		WithBaseImages(&baseImageServer{client: mgr.GetClient(), reader: mgr.GetAPIReader(), runtime: rt,
			nodeName: cfg.NodeName, platform: cfg.Platform})
	listen := cfg.TransferListen
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		return server.ListenAndServe(ctx, listen)
	})); err != nil {
		return nil, err
	}

	publisher := &Publisher{Client: mgr.GetClient(), Runtime: rt, Host: capabilities.Host{}, Kubelet: cfg.Kubelet,
		NodeName: cfg.NodeName, Endpoint: cfg.TransferEndpoint, Fingerprint: identity.Fingerprint,
		Version: cfg.Version, Clock: cfg.Clock, Heartbeat: cfg.Heartbeat, Probe: cfg.ProbeInterval}
	if err := mgr.Add(publisher); err != nil {
		return nil, err
	}
	return rt, nil
}

// transferIdentity returns the transfer certificate kept in the state
// directory. Target agents pin the fingerprint that the NodeAgent publishes,
// so keeping it across restarts lets them fetch images that the agent served
// before a restart. A new certificate replaces one that is missing, invalid,
// or near its expiry, and the publisher publishes its fingerprint.
func transferIdentity(ctx context.Context, dir, nodeName string, now time.Time) (*transfer.Identity, error) {
	log := logf.FromContext(ctx).WithName("transfer")
	identity, err := transfer.LoadIdentity(dir, nodeName, now)
	if err == nil {
		log.Info("Reusing the kept transfer certificate", "fingerprint", identity.Fingerprint)
		return identity, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		log.Info("Replacing the kept transfer certificate", "reason", err.Error())
	}
	if identity, err = transfer.NewIdentity(nodeName, now); err != nil {
		return nil, err
	}
	if err := transfer.SaveIdentity(dir, identity); err != nil {
		return nil, err
	}
	log.Info("Created a transfer certificate", "fingerprint", identity.Fingerprint)
	return identity, nil
}

// ListenerAddress returns the host:port a listener address advertises when
// only a port is given.
func ListenerAddress(host, listen string) string {
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	return net.JoinHostPort(host, port)
}
