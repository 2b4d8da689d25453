// Command verify-manifests renders config/default with kustomize and the
// chart charts/lpm with helm, and fails when the two give different
// objects. make verify runs it.
//
// Usage: go run ./hack/verify-manifests -kustomize PATH -helm PATH [-config DIR] [-chart DIR]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/lpm-dev/lpm/internal/manifests"
)

func main() {
	var (
		tools  manifests.Tools
		config string
		chart  string
	)
	flag.StringVar(&tools.KustomizePath, "kustomize", "kustomize", "Path of the kustomize binary.")
	flag.StringVar(&tools.HelmPath, "helm", "helm", "Path of the helm binary.")
	flag.StringVar(&config, "config", "config/default", "Kustomization that the chart must match.")
	flag.StringVar(&chart, "chart", "charts/lpm", "Directory of the Helm chart.")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	diffs, err := verify(ctx, tools, config, chart)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if len(diffs) > 0 {
		for _, d := range diffs {
			fmt.Fprintln(os.Stderr, d)
		}
		fmt.Fprintf(os.Stderr, "%s and %s render different objects (%d differences): change both the same way\n",
			config, chart, len(diffs))
		os.Exit(1)
	}
	fmt.Printf("%s and %s render the same objects\n", config, chart)
}

func verify(ctx context.Context, tools manifests.Tools, config, chart string) ([]string, error) {
	want, err := tools.Build(ctx, config)
	if err != nil {
		return nil, err
	}
	got, err := tools.Template(ctx, chart, manifests.ReferenceNamespace, manifests.ReferenceValues...)
	if err != nil {
		return nil, err
	}
	return manifests.Compare(want, got), nil
}
