package capabilities

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lpm-dev/lpm/internal/agent/internal/noderoot"
	"github.com/lpm-dev/lpm/internal/agent/runtime"
)

// TestProbeRealNode finds CRIU and runc through a real containerd's
// process: the test process does not see the node root's files.
func TestProbeRealNode(t *testing.T) {
	noderoot.RequireComponents(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, restore := range []bool{true, false} {
		node := noderoot.Start(t, noderoot.Config{Name: "caps", SandboxImage: "localhost/none:v1",
			RestoreViaCreate: restore})
		rt, err := runtime.Connect(ctx, node.Socket)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = rt.Close() }()

		report, err := Host{}.Probe(ctx, rt)
		if err != nil {
			t.Fatalf("Probe() error = %v", err)
		}

		caps := report.Capabilities
		if caps.RuntimeName != "containerd" || caps.RuntimeVersion != "v2.3.7" {
			t.Errorf("runtime = %s %s, want containerd v2.3.7", caps.RuntimeName, caps.RuntimeVersion)
		}
		if !strings.HasPrefix(caps.CRIUVersion, "4.") {
			t.Errorf("CRIUVersion = %q, want 4.x from the node root", caps.CRIUVersion)
		}
		if caps.OCIRuntime != "runc" || !strings.HasPrefix(caps.OCIRuntimeVersion, "1.") {
			t.Errorf("OCI runtime = %s %s, want runc 1.x", caps.OCIRuntime, caps.OCIRuntimeVersion)
		}
		if caps.KernelVersion == "" || caps.CgroupVersion == 0 || len(caps.CPUFeatures) == 0 {
			t.Errorf("kernel %q, cgroup %d, %d CPU flags; want all set", caps.KernelVersion, caps.CgroupVersion,
				len(caps.CPUFeatures))
		}
		if len(report.CheckpointProblems) != 0 {
			t.Errorf("CheckpointProblems = %v, want none", report.CheckpointProblems)
		}
		if restore && len(report.RestoreProblems) != 0 {
			t.Errorf("RestoreProblems = %v, want none with restore enabled", report.RestoreProblems)
		}
		if !restore && len(report.RestoreProblems) == 0 {
			t.Error("RestoreProblems is empty with enable_experimental_restore_via_create off")
		}
		t.Logf("restore %v: CRIU %s features %v, %s %s, cgroup v%d, non-root checkpoint %v", restore,
			caps.CRIUVersion, caps.CRIUFeatures, caps.OCIRuntime, caps.OCIRuntimeVersion, caps.CgroupVersion,
			caps.CheckpointNonRoot)
	}
}
