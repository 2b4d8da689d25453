package node

import (
	"context"
	"testing"
	"time"

	"github.com/lpm-dev/lpm/lab/network"
)

// StartForTest starts a node for a test and stops it when the test ends,
// together with the lab's bridge once no node of the lab is attached. The
// test is skipped when it does not run as root.
func StartForTest(t testing.TB, cfg Config) *Node {
	t.Helper()
	if testing.Short() {
		t.Skip("starting a lab node is not a short test")
	}
	RequireRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("failed to start node: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Stop(); err != nil {
			t.Errorf("failed to stop node %s: %v", n.Name(), err)
		}
		if network.NodesAttached(cfg.Instance) == 0 {
			if err := network.RemoveBridge(cfg.Instance); err != nil {
				t.Errorf("failed to remove the lab bridge: %v", err)
			}
		}
	})
	return n
}
