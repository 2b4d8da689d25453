//go:build e2e

package e2e

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lpm-dev/lpm/lab/cluster"
	"github.com/lpm-dev/lpm/lab/instance"
	"github.com/lpm-dev/lpm/lab/proc"
	"github.com/lpm-dev/lpm/lab/workload"
)

// TestLabDownLeavesNothing runs a second, one-node lab next to the suite's
// lab: it starts it, runs a pod, crashes it (SIGKILL to every process it
// recorded), starts it again over the remains, and stops it. After the
// stop, nothing of it may remain: no process, mount, network namespace,
// interface, route, packet-filter rule or cgroup.
func TestLabDownLeavesNothing(t *testing.T) {
	inst, err := instance.New("e2edown", theLab.Instance().StateDir+"-lifecycle")
	if err != nil {
		t.Fatal(err)
	}
	if inst.Slot == theLab.Instance().Slot {
		t.Fatalf("lifecycle lab and suite lab share slot %d", inst.Slot)
	}
	t.Cleanup(func() { _ = os.RemoveAll(filepath.Dir(inst.StateDir)) })
	copyImages(t, theLab.Instance().ImagesDir(), inst.ImagesDir())
	l := cluster.New(inst, cluster.Options{Nodes: 1, Log: t.Logf})
	t.Cleanup(func() { _ = l.Down() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	if err := l.Up(ctx); err != nil {
		t.Fatal(err)
	}
	runPod(ctx, t, l)

	// Crash: kill every recorded process without any cleanup.
	pidFiles, _ := filepath.Glob(filepath.Join(inst.StateDir, "*", "*.pid"))
	nodePIDFiles, _ := filepath.Glob(filepath.Join(inst.StateDir, "nodes", "*", "*.pid"))
	for _, f := range append(pidFiles, nodePIDFiles...) {
		if p, err := proc.ReadFile(f); err == nil && p.Alive() {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
	}
	if remains, _ := l.Remains(); len(remains) == 0 {
		t.Fatalf("a crashed lab left nothing, so the test proves nothing")
	}

	if err := l.Up(ctx); err != nil {
		t.Fatalf("up after a crash: %v", err)
	}
	runPod(ctx, t, l)
	if err := l.Down(); err != nil {
		t.Fatal(err)
	}
	remains, err := l.Remains()
	if err != nil {
		t.Fatal(err)
	}
	if len(remains) > 0 {
		t.Errorf("lab left remains after down:\n  %s", strings.Join(remains, "\n  "))
	}
}

func runPod(ctx context.Context, t *testing.T, l *cluster.Lab) {
	t.Helper()
	cfg, err := l.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	c, err := workload.NewClients(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pod := workload.CounterPod("default", "counter", l.Instance().NodeName(0))
	if err := c.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitPodReady(ctx, "default", "counter", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
}

func copyImages(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	archives, _ := filepath.Glob(filepath.Join(from, "*.tar"))
	for _, a := range archives {
		if !strings.Contains(a, "pause") && !strings.Contains(a, "counter") {
			continue
		}
		src, err := os.Open(a)
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.Create(filepath.Join(to, filepath.Base(a)))
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(dst, src)
		_ = src.Close()
		_ = dst.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
}
