// Command lpm-agent is lpm's node agent (a DaemonSet): it checkpoints pods
// through the local kubelet, carries checkpoint images between nodes and
// imports them into the node's containerd. See internal/agent.
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsfilters "sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/agent"
	"github.com/lpm-dev/lpm/internal/agent/kubelet"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run() error {
	var (
		cfg                 agent.Config
		nodeAddress         string
		kubeletPort         int
		kubeletCA           string
		kubeletInsecure     bool
		kubeletToken        string
		peerUsers           string
		insecureRegistries  string
		metricsAddr, health string
		metricsCerts        string
	)
	flag.StringVar(&cfg.NodeName, "node-name", os.Getenv("NODE_NAME"), "Name of the node the agent runs on.")
	flag.StringVar(&nodeAddress, "node-address", os.Getenv("NODE_ADDRESS"),
		"Address of the node: the kubelet listens there and peers reach the transfer server there.")
	flag.IntVar(&kubeletPort, "kubelet-port", kubelet.DefaultPort, "Port of the kubelet's HTTPS server.")
	flag.StringVar(&kubeletCA, "kubelet-ca-file", "", "PEM file of the CA (or the self-signed certificate) "+
		"that signed the kubelet's serving certificate.")
	flag.BoolVar(&kubeletInsecure, "kubelet-insecure-skip-tls-verify", false,
		"Do not verify the kubelet's serving certificate. Logged as a warning; for test clusters only.")
	flag.StringVar(&kubeletToken, "kubelet-token-file", "/var/run/secrets/kubernetes.io/serviceaccount/token",
		"Token the agent presents to the kubelet.")
	flag.StringVar(&cfg.ContainerdSocket, "containerd-socket", "/run/containerd/containerd.sock",
		"containerd's socket.")
	flag.StringVar(&cfg.StateDir, "state-dir", "/var/lib/lpm", "Directory of the agent's state (mode 0700).")
	flag.StringVar(&cfg.CheckpointsDir, "kubelet-checkpoints-dir", "/var/lib/kubelet/checkpoints",
		"Directory where the kubelet writes checkpoint archives, as the node sees it.")
	flag.StringVar(&cfg.LocalCheckpointsDir, "checkpoints-mount-dir", "",
		"Where that directory is mounted in the agent's container; the same path when empty.")
	flag.StringVar(&cfg.KubeletPodsDir, "kubelet-pods-dir", "/var/lib/kubelet/pods",
		"The kubelet's pods directory as the agent sees it; the agent reads emptyDir volumes there.")
	flag.Int64Var(&cfg.MaxVolumeDataBytes, "max-volume-data-bytes", agent.DefaultMaxVolumeDataBytes,
		"Maximum size in bytes of the emptyDir file contents one migration carries; a larger pod is rejected "+
			"before the checkpoint.")
	flag.StringVar(&cfg.VolumeCopierPath, "volume-copier", "/lpm-volume-restore",
		"Static program that volume data images run to restore emptyDir volumes in the restored pod.")
	flag.StringVar(&cfg.TransferListen, "transfer-listen", ":10351", "Address of the image transfer server.")
	flag.StringVar(&cfg.TransferTokenFile, "transfer-token-file", "/var/run/secrets/lpm.dev/transfer/token",
		"Projected service-account token of the transfer audience, sent to source agents.")
	flag.StringVar(&cfg.TransferAudience, "transfer-audience", "lpm.dev/transfer",
		"Audience of the transfer tokens.")
	flag.StringVar(&peerUsers, "peer-users", "", "Comma-separated user names of the agents' service account "+
		"(system:serviceaccount:NAMESPACE:NAME); defaults to this pod's service account.")
	flag.StringVar(&insecureRegistries, "insecure-registries", "",
		"Comma-separated registries (host:port) reached over plain HTTP in transfer mode Registry.")
	flag.StringVar(&cfg.Snapshotter, "snapshotter", "overlayfs", "containerd snapshotter of the CRI plugin.")
	flag.DurationVar(&cfg.GCInterval, "gc-interval", 5*time.Minute, "Period of the garbage collection.")
	flag.DurationVar(&cfg.LogMaxAge, "criu-log-max-age", agent.DefaultLogMaxAge,
		"Maximum age of the CRIU log directories kept of migrations that failed or were cancelled; the garbage "+
			"collection removes older ones.")
	flag.IntVar(&cfg.LogMaxCount, "criu-log-max-count", agent.DefaultLogMaxCount,
		"Maximum number of CRIU log directories kept of migrations that failed or were cancelled; the garbage "+
			"collection removes the oldest beyond it.")
	flag.DurationVar(&cfg.ProbeInterval, "probe-interval", 5*time.Minute,
		"Period of the node capability probe.")
	flag.DurationVar(&cfg.DefaultCheckpointTimeout, "default-checkpoint-timeout", 2*time.Minute,
		"Checkpoint timeout of a PodMigration that sets no spec.timeouts.checkpoint. "+
			"Set the controller's --default-checkpoint-timeout to the same value.")
	flag.DurationVar(&cfg.DefaultTransferTimeout, "default-transfer-timeout", 10*time.Minute,
		"Transfer timeout of a PodMigration that sets no spec.timeouts.transfer. "+
			"Set the controller's --default-transfer-timeout to the same value.")
	flag.StringVar(&metricsCerts, "metrics-cert-dir", "",
		"Directory with the metrics endpoint's tls.crt and tls.key. Without them it serves a self-signed certificate.")
	flag.StringVar(&metricsAddr, "metrics-bind-address", "0",
		"Address of the metrics endpoint (HTTPS, authenticated); 0 disables it.")
	flag.StringVar(&health, "health-probe-bind-address", ":10352", "Address of /healthz and /readyz.")
	klog.InitFlags(nil)
	flag.Parse()
	ctrl.SetLogger(klog.NewKlogr())

	if cfg.NodeName == "" || nodeAddress == "" {
		return fmt.Errorf("--node-name and --node-address are required (or NODE_NAME and NODE_ADDRESS)")
	}
	if cfg.DefaultCheckpointTimeout <= 0 || cfg.DefaultTransferTimeout <= 0 {
		return fmt.Errorf("--default-checkpoint-timeout and --default-transfer-timeout must be positive")
	}
	if cfg.LogMaxAge <= 0 || cfg.LogMaxCount <= 0 {
		return fmt.Errorf("--criu-log-max-age and --criu-log-max-count must be positive, got %s and %d",
			cfg.LogMaxAge, cfg.LogMaxCount)
	}
	if cfg.LocalCheckpointsDir == "" {
		cfg.LocalCheckpointsDir = cfg.CheckpointsDir
	}
	cfg.TransferEndpoint = agent.ListenerAddress(nodeAddress, cfg.TransferListen)
	cfg.Version = version
	cfg.PeerUsers = splitList(peerUsers)
	if len(cfg.PeerUsers) == 0 {
		ns, sa := os.Getenv("POD_NAMESPACE"), os.Getenv("SERVICE_ACCOUNT")
		if ns == "" || sa == "" {
			return fmt.Errorf("--peer-users is required unless POD_NAMESPACE and SERVICE_ACCOUNT are set")
		}
		cfg.PeerUsers = []string{"system:serviceaccount:" + ns + ":" + sa}
	}
	cfg.InsecureRegistries = splitList(insecureRegistries)

	kc, err := kubelet.New(kubelet.Config{Address: nodeAddress, Port: kubeletPort, CAFile: kubeletCA,
		InsecureSkipVerify: kubeletInsecure, TokenFile: kubeletToken, Log: ctrl.Log.WithName("kubelet")})
	if err != nil {
		return err
	}
	cfg.Checkpointer, cfg.Kubelet = kc, kc

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := lpmv1.AddToScheme(scheme); err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme: scheme,
		Metrics: metricsserver.Options{BindAddress: metricsAddr, SecureServing: true, CertDir: metricsCerts,
			FilterProvider: metricsfilters.WithAuthenticationAndAuthorization},
		HealthProbeBindAddress: health,
		// Only pods of this node are cached: the agent never lists the
		// cluster's pods.
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}: {Field: fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName)},
		}},
		// The agent may get its own Node but not list or watch all nodes,
		// so Node reads go to the API server instead of a cache.
		Client: client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Node{}}}},
	})
	if err != nil {
		return fmt.Errorf("failed to create the manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", func(_ *http.Request) error { return nil }); err != nil {
		return err
	}
	ctx := ctrl.SetupSignalHandler()
	rt, err := agent.Setup(ctx, mgr, cfg)
	if err != nil {
		return err
	}
	defer func() { _ = rt.Close() }()
	ctrl.Log.Info("Starting lpm-agent", "node", cfg.NodeName, "version", version,
		"transferEndpoint", cfg.TransferEndpoint)
	return mgr.Start(ctx)
}

func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
