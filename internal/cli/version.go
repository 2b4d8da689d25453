package cli

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// version is the plugin's version, set at build time with
// -ldflags "-X github.com/lpm-dev/lpm/internal/cli.version=v0.1.0".
var version = ""

// clientVersion returns the plugin's version: the one set at build time,
// else the module version from the build information.
func clientVersion() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
		return info.Main.Version
	}
	return "(devel)"
}

func newVersionCommand(root *rootOptions) *cobra.Command {
	var clientOnly bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the plugin's version, and the API server's",
		Long: `Print the version of kubectl-migrate and, unless --client is set, the API
server's version and whether the API server serves lpm.dev/v1 PodMigrations.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("version takes no arguments, got %q", args)
			}
			return nil
		},
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := root.streams.Out
			_, _ = fmt.Fprintf(out, "Client Version: %s (%s, %s/%s)\n", clientVersion(), runtime.Version(),
				runtime.GOOS, runtime.GOARCH)
			if clientOnly {
				return nil
			}
			return writeServerVersion(cmd.Context(), root)
		},
	}
	cmd.Flags().BoolVar(&clientOnly, "client", false, "Print the client version only, without contacting the API server.")
	return cmd
}

func writeServerVersion(_ context.Context, root *rootOptions) error {
	c, err := root.getClients()
	if err != nil {
		return err
	}
	info, err := c.discovery.ServerVersion()
	if err != nil {
		return fmt.Errorf("failed to get the API server's version: %w", err)
	}
	out := root.streams.Out
	_, _ = fmt.Fprintf(out, "Server Version: %s\n", info.GitVersion)

	resources, err := c.discovery.ServerResourcesForGroupVersion(lpmv1.GroupVersion.String())
	switch {
	case apierrors.IsNotFound(err):
		_, _ = fmt.Fprintf(out, "lpm API: %s is not served. Install the lpm CRDs.\n", lpmv1.GroupVersion)
		return nil
	case err != nil:
		return fmt.Errorf("failed to discover %s: %w", lpmv1.GroupVersion, err)
	}
	for _, r := range resources.APIResources {
		if r.Name == "podmigrations" {
			_, _ = fmt.Fprintf(out, "lpm API: %s served\n", lpmv1.GroupVersion)
			return nil
		}
	}
	_, _ = fmt.Fprintf(out, "lpm API: %s is served without podmigrations. Update the lpm CRDs.\n", lpmv1.GroupVersion)
	return nil
}
