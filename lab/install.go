package lab

import (
	"context"
	"fmt"

	"github.com/lpm-dev/lpm/lab/cluster"
)

// Install installs lpm from config/ into the lab.
func Install(ctx context.Context, opts Options, l *cluster.Lab) error {
	return fmt.Errorf("not implemented yet")
}

// Demo runs the demo migration.
func Demo(ctx context.Context, opts Options, l *cluster.Lab) (int, error) {
	return 1, fmt.Errorf("not implemented yet")
}
