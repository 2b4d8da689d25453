package runtime_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/lpm-dev/lpm/internal/agent/internal/noderoot"
	"github.com/lpm-dev/lpm/internal/agent/internal/testenv"
	"github.com/lpm-dev/lpm/internal/agent/runtime"
)

// TestKillFrozen checks, on this kernel with a real containerd and runc,
// what the source agent relies on to end a migrated source: SIGKILL sent to
// a frozen container stays pending, so the container neither runs nor exits
// while frozen and the kubelet sees nothing to restart. Once thawed, the
// processes die without running again, even with a SIGTERM pending too, as
// the kubelet sends one when it stops a deleted pod.
func TestKillFrozen(t *testing.T) {
	noderoot.RequireComponents(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	reg := testenv.StartRegistry(t)
	images := testenv.PushWorkloadImages(t, reg)
	n := startNode(ctx, t, "kill", reg, images, nil)
	cri := n.rt.CRI()
	pod := testenv.RunPod(ctx, t, cri, n.node.CgroupParent, n.node.LogDir, "source", "uid-kill")
	t.Cleanup(func() { testenv.StopPod(context.WithoutCancel(ctx), t, cri, pod) })

	// The counter prints a line when it handles SIGTERM.
	id, err := testenv.CreateAndStart(ctx, cri, pod, "counter", images.Counter, "0", "sigterm")
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(pod.LogDir, "counter.log")
	testenv.WaitForCount(t, logPath, 5, 30*time.Second)
	pid, err := n.rt.TaskPID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.rt.Pause(ctx, id); err != nil {
		t.Fatalf("Pause() error = %v", err)
	}
	frozenAt := lastCount(t, logPath)

	if err := n.rt.KillFrozen(ctx, id); err != nil {
		t.Fatalf("KillFrozen() error = %v", err)
	}
	if err := syscall.Kill(int(pid), syscall.SIGTERM); err != nil {
		t.Fatalf("kill(%d, SIGTERM) error = %v", pid, err)
	}
	time.Sleep(2 * time.Second)

	if state, err := n.rt.TaskStatus(ctx, id); err != nil || state != runtime.TaskPaused {
		t.Errorf("task after KillFrozen = %s, %v; want paused", state, err)
	}
	if state := criState(ctx, t, cri, id); state.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("CRI state after KillFrozen = %s, want CONTAINER_RUNNING: the kubelet must see no exit",
			state.GetState())
	}
	if pending := pendingSignals(t, pid); pending&(1<<(syscall.SIGKILL-1)) == 0 {
		t.Errorf("pending signals of process %d = %#x, want SIGKILL pending", pid, pending)
	}
	if got := lastCount(t, logPath); got != frozenAt {
		t.Errorf("count moved from %d to %d while frozen", frozenAt, got)
	}

	if err := n.rt.Resume(ctx, id); err != nil {
		t.Fatalf("Resume() error = %v", err)
	}
	status := waitExited(ctx, t, cri, id)
	if status.GetExitCode() != 128+int32(syscall.SIGKILL) {
		t.Errorf("exit code = %d (%s), want %d: killed by SIGKILL", status.GetExitCode(), status.GetReason(),
			128+int32(syscall.SIGKILL))
	}
	if got := lastCount(t, logPath); got != frozenAt {
		t.Errorf("count moved from %d to %d after the thaw: the process ran again", frozenAt, got)
	}
	if data, err := os.ReadFile(logPath); err != nil || strings.Contains(string(data), "terminated") {
		t.Errorf("log of the killed process = %v, %q; want no line of its SIGTERM handler", err,
			tail(string(data), 300))
	}
}

// TestRuntimeKillThawsPaused shows why KillFrozen signals the processes
// itself: killing a paused container through containerd (runc kill) thaws
// it, so it exits at once and the kubelet would restart it.
func TestRuntimeKillThawsPaused(t *testing.T) {
	noderoot.RequireComponents(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	reg := testenv.StartRegistry(t)
	images := testenv.PushWorkloadImages(t, reg)
	n := startNode(ctx, t, "runckill", reg, images, nil)
	cri := n.rt.CRI()
	pod := testenv.RunPod(ctx, t, cri, n.node.CgroupParent, n.node.LogDir, "source", "uid-runckill")
	t.Cleanup(func() { testenv.StopPod(context.WithoutCancel(ctx), t, cri, pod) })

	id := testenv.StartContainer(ctx, t, cri, pod, "counter", images.Counter)
	testenv.WaitForCount(t, filepath.Join(pod.LogDir, "counter.log"), 3, 30*time.Second)
	if err := n.rt.Pause(ctx, id); err != nil {
		t.Fatalf("Pause() error = %v", err)
	}
	container, err := n.rt.Client().LoadContainer(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	task, err := container.Task(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Kill(ctx, syscall.SIGKILL); err != nil {
		t.Fatalf("Kill() of a paused task error = %v", err)
	}
	waitExited(ctx, t, cri, id)
}

func criState(ctx context.Context, t *testing.T, cri runtimeapi.RuntimeServiceClient,
	id string) *runtimeapi.ContainerStatus {
	t.Helper()
	resp, err := cri.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("ContainerStatus(%s) error = %v", id, err)
	}
	return resp.GetStatus()
}

// waitExited waits up to ten seconds until the CRI reports the container
// exited and returns its status.
func waitExited(ctx context.Context, t *testing.T, cri runtimeapi.RuntimeServiceClient,
	id string) *runtimeapi.ContainerStatus {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		status := criState(ctx, t, cri, id)
		if status.GetState() == runtimeapi.ContainerState_CONTAINER_EXITED {
			return status
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s is %s after 10s, want exited", id, status.GetState())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pendingSignals returns the signals pending for a process, for its main
// thread or for the whole process, as /proc/PID/status lists them.
func pendingSignals(t *testing.T, pid uint32) uint64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("failed to read the status of process %d: %v", pid, err)
	}
	var pending uint64
	for _, line := range strings.Split(string(data), "\n") {
		key, value, ok := strings.Cut(line, ":")
		if !ok || (key != "SigPnd" && key != "ShdPnd") {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(value), 16, 64)
		if err != nil {
			t.Fatalf("invalid %s line %q of process %d: %v", key, line, pid, err)
		}
		pending |= mask
	}
	return pending
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
