// Command lpm-controller runs the PodMigration controller: it drives each
// migration through its phases and hands node work to the lpm agents
// through the API.
package main

import (
	"flag"
	"os"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/controller"
)

func main() {
	var (
		metricsAddr   string
		metricsCerts  string
		probeAddr     string
		leaderElect   bool
		maxMigrations int
		maxOutbound   int
		concurrency   int
		defaults      controller.Defaults
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8443",
		"Address of the HTTPS metrics endpoint, which requires an authorized token. 0 disables it.")
	flag.StringVar(&metricsCerts, "metrics-cert-dir", "",
		"Directory with the metrics endpoint's tls.crt and tls.key. Without them it serves a self-signed certificate.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints.")
	flag.BoolVar(&leaderElect, "leader-elect", false,
		"Elect a leader among the controller's replicas, so that only one reconciles. "+
			"The Deployment sets it.")
	flag.IntVar(&maxMigrations, "max-migrations", controller.DefaultMaxMigrations,
		"Maximum number of migrations past Pending in the cluster. The rest wait in Pending.")
	flag.IntVar(&maxOutbound, "max-outbound-per-node", controller.DefaultMaxOutboundPerNode,
		"Maximum number of migrations past Pending whose source is the same node.")
	flag.IntVar(&concurrency, "max-concurrent-reconciles", controller.DefaultMaxConcurrentReconciles,
		"Number of PodMigrations reconciled at once.")
	flag.DurationVar(&defaults.CheckpointTimeout, "default-checkpoint-timeout", controller.DefaultCheckpointTimeout,
		"Checkpoint timeout of a PodMigration that sets no spec.timeouts.checkpoint. "+
			"Set the agents' --default-checkpoint-timeout to the same value.")
	flag.DurationVar(&defaults.TransferTimeout, "default-transfer-timeout", controller.DefaultTransferTimeout,
		"Transfer timeout of a PodMigration that sets no spec.timeouts.transfer. "+
			"Set the agents' --default-transfer-timeout to the same value.")
	flag.DurationVar(&defaults.RestoreTimeout, "default-restore-timeout", controller.DefaultRestoreTimeout,
		"Restore timeout of a PodMigration that sets no spec.timeouts.restore.")
	flag.DurationVar(&defaults.OverallTimeout, "default-overall-timeout", controller.DefaultOverallTimeout,
		"Overall timeout of a PodMigration that sets no spec.timeouts.overall.")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	log := ctrl.Log.WithName("setup")

	if maxMigrations < 1 || maxOutbound < 1 || concurrency < 1 {
		log.Error(nil, "Invalid flags: --max-migrations, --max-outbound-per-node and "+
			"--max-concurrent-reconciles must be at least 1")
		os.Exit(2)
	}
	if err := defaults.Validate(); err != nil {
		log.Error(err, "Invalid flags")
		os.Exit(2)
	}

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		log.Error(err, "Failed to build the scheme")
		os.Exit(1)
	}
	if err := lpmv1.AddToScheme(scheme); err != nil {
		log.Error(err, "Failed to build the scheme")
		os.Exit(1)
	}

	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), controller.ManagerOptions(scheme, controller.ManagerConfig{
		MetricsAddr: metricsAddr, MetricsCertDir: metricsCerts, ProbeAddr: probeAddr, LeaderElection: leaderElect,
	}))
	if err != nil {
		log.Error(err, "Failed to create the manager")
		os.Exit(1)
	}

	ctx := ctrl.SetupSignalHandler()
	r := &controller.PodMigrationReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Clock:     clock.RealClock{},
		Recorder:  mgr.GetEventRecorder("lpm-controller"),
		Slots:     controller.NewSlots(maxMigrations, maxOutbound),
		Defaults:  defaults,
	}
	if err := r.SetupWithManager(ctx, mgr, controller.Options{MaxConcurrentReconciles: concurrency}); err != nil {
		log.Error(err, "Failed to set up the PodMigration controller")
		os.Exit(1)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "Failed to add the health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		log.Error(err, "Failed to add the readiness check")
		os.Exit(1)
	}

	log.Info("Starting lpm-controller", "maxMigrations", maxMigrations, "maxOutboundPerNode", maxOutbound,
		"leaderElection", leaderElect, "defaultTimeouts", defaults)
	if err := mgr.Start(ctx); err != nil {
		log.Error(err, "Manager stopped with an error")
		os.Exit(1)
	}
}
