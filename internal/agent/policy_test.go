package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	clocktesting "k8s.io/utils/clock/testing"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/agent/archive"
	"github.com/lpm-dev/lpm/internal/agent/kubelet"
	"github.com/lpm-dev/lpm/internal/agent/runtime"
	"github.com/lpm-dev/lpm/internal/agent/state"
	"github.com/lpm-dev/lpm/internal/agent/transfer"
)

func TestFreezeBudget(t *testing.T) {
	httpProbe := func(period, timeout, threshold int32) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Port: intstr.FromInt32(8080)}}, PeriodSeconds: period, TimeoutSeconds: timeout,
			FailureThreshold: threshold}
	}
	always := corev1.ContainerRestartPolicyAlways
	cases := []struct {
		name        string
		pod         corev1.PodSpec
		containers  []string
		wantBudget  time.Duration
		wantLimited bool
	}{
		{name: "no probes", pod: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}},
			containers: []string{"app"}},
		{name: "exec probe does not limit", containers: []string{"app"},
			pod: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", LivenessProbe: &corev1.Probe{
				ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}}}}},
		{name: "tcp probe does not limit", containers: []string{"app"},
			pod: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", LivenessProbe: &corev1.Probe{
				ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{
					Port: intstr.FromInt32(80)}}}}}}},
		{name: "http probe defaults", containers: []string{"app"},
			pod:        corev1.PodSpec{Containers: []corev1.Container{{Name: "app", LivenessProbe: httpProbe(0, 0, 0)}}},
			wantBudget: 21 * time.Second, wantLimited: true},
		{name: "shortest of two containers", containers: []string{"app", "side"},
			pod: corev1.PodSpec{Containers: []corev1.Container{
				{Name: "app", LivenessProbe: httpProbe(10, 2, 6)},
				{Name: "side", LivenessProbe: httpProbe(2, 1, 3)},
			}},
			wantBudget: 5 * time.Second, wantLimited: true},
		{name: "native sidecar counts", containers: []string{"side", "app"},
			pod: corev1.PodSpec{
				InitContainers: []corev1.Container{{Name: "side", RestartPolicy: &always,
					LivenessProbe: httpProbe(5, 1, 2)}},
				Containers: []corev1.Container{{Name: "app"}},
			},
			wantBudget: 6 * time.Second, wantLimited: true},
		{name: "container not checkpointed", containers: []string{"app"},
			pod: corev1.PodSpec{Containers: []corev1.Container{
				{Name: "app"}, {Name: "other", LivenessProbe: httpProbe(1, 1, 1)}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			budget, limited := freezeBudget(&corev1.Pod{Spec: tc.pod}, tc.containers)
			if budget != tc.wantBudget || limited != tc.wantLimited {
				t.Errorf("freezeBudget() = %s, %v; want %s, %v", budget, limited, tc.wantBudget, tc.wantLimited)
			}
		})
	}
}

func TestFreezeMargin(t *testing.T) {
	cases := []struct {
		budget time.Duration
		want   time.Duration
	}{
		{budget: 7 * time.Second, want: 5 * time.Second},
		{budget: 80 * time.Second, want: 20 * time.Second},
	}
	for _, tc := range cases {
		if got := freezeMargin(tc.budget); got != tc.want {
			t.Errorf("freezeMargin(%s) = %s, want %s", tc.budget, got, tc.want)
		}
	}
}

func TestLocalArchivePath(t *testing.T) {
	a := &Agent{opts: Options{CheckpointsDir: "/var/lib/kubelet/checkpoints",
		LocalCheckpointsDir: "/host/checkpoints"}}
	cases := []struct {
		nodePath string
		want     string
		wantErr  bool
	}{
		{nodePath: "/var/lib/kubelet/checkpoints/checkpoint-web_default-app-2026-12-04T15:17:44Z.tar",
			want: "/host/checkpoints/checkpoint-web_default-app-2026-12-04T15:17:44Z.tar"},
		{nodePath: "/etc/shadow", wantErr: true},
		{nodePath: "/var/lib/kubelet/checkpoints/../pki/kubelet.key", wantErr: true},
		{nodePath: "/var/lib/kubelet/checkpoints/other.tar", wantErr: true},
		{nodePath: "/var/lib/kubelet/checkpoints/sub/checkpoint-x.tar", wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.nodePath, func(t *testing.T) {
			got, err := a.localArchivePath(tc.nodePath)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("localArchivePath() = %q, %v; want %q, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// TestCheckArchiveOwner covers the check of whose checkpoint an archive
// holds, including the archive of a container that containerd restored,
// whose spec names the container "containerd".
func TestCheckArchiveOwner(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-restored", UID: "0d1e"}}
	cases := []struct {
		name       string
		configName string
		container  string
		wantErr    bool
	}{
		{name: "own container", configName: "counter_web-restored_default_0d1e_0", container: "counter"},
		{name: "later attempt", configName: "counter_web-restored_default_0d1e_4", container: "counter"},
		{name: "other container", configName: "sidecar_web-restored_default_0d1e_0", container: "counter",
			wantErr: true},
		{name: "other pod", configName: "counter_web_default_0d1e_0", container: "counter", wantErr: true},
		{name: "other namespace", configName: "counter_web-restored_prod_0d1e_0", container: "counter",
			wantErr: true},
		{name: "earlier pod of the same name", configName: "counter_web-restored_default_9f00_0",
			container: "counter", wantErr: true},
		{name: "runtime's own name", configName: "containerd", container: "counter", wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			info := &archive.Info{Config: metadata.ContainerConfig{Name: tc.configName},
				SpecAnnotations: map[string]string{"io.kubernetes.cri.container-name": "containerd"}}
			err := checkArchiveOwner(info, pod, tc.container)
			if (err != nil) != tc.wantErr {
				t.Fatalf("checkArchiveOwner() error = %v, want error %v", err, tc.wantErr)
			}
			var archiveErr *archive.Error
			if err != nil && !errors.As(err, &archiveErr) {
				t.Errorf("checkArchiveOwner() error = %v, want an *archive.Error", err)
			}
		})
	}
}

func TestImportReason(t *testing.T) {
	cases := []struct {
		err  error
		want lpmv1.Reason
	}{
		{err: fmt.Errorf("%w: layer", runtime.ErrDigestMismatch), want: lpmv1.ReasonDigestMismatch},
		{err: fmt.Errorf("%w: %w", runtime.ErrSource, transfer.ErrDigest), want: lpmv1.ReasonDigestMismatch},
		{err: fmt.Errorf("%w: %w", runtime.ErrSource, transfer.ErrTooLong), want: lpmv1.ReasonDigestMismatch},
		{err: fmt.Errorf("%w: %w", runtime.ErrSource, transfer.ErrTruncated), want: lpmv1.ReasonTransferFailed},
		{err: fmt.Errorf("%w: %w", runtime.ErrSource, &transfer.StatusError{Code: 403}),
			want: lpmv1.ReasonTransferFailed},
		{err: fmt.Errorf("fetch: %w", transfer.ErrPinMismatch), want: lpmv1.ReasonTransferFailed},
		{err: fmt.Errorf("fetch: %w", context.DeadlineExceeded), want: lpmv1.ReasonTransferTimedOut},
		{err: fmt.Errorf("%w: blob: %w", runtime.ErrSource, dialTimeout()), want: lpmv1.ReasonTransferFailed},
		{err: fmt.Errorf("%w: two layers", runtime.ErrInvalidImage), want: lpmv1.ReasonImportFailed},
		{err: errors.New("no space left on device"), want: lpmv1.ReasonImportFailed},
	}
	for _, tc := range cases {
		t.Run(tc.err.Error(), func(t *testing.T) {
			if got := importReason(tc.err); got != tc.want {
				t.Errorf("importReason() = %s, want %s", got, tc.want)
			}
		})
	}
}

// dialTimeout returns the error of a dial that timed out, as a dial to a
// source node that is down does.
func dialTimeout() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	// An expired deadline makes the dial fail with its timeout error at
	// once, whether or not anything listens.
	_, err = (&net.Dialer{Deadline: time.Unix(1, 0)}).Dial("tcp", addr)
	return err
}

func TestCheckpointReason(t *testing.T) {
	expired, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	stopped, stop := context.WithCancelCause(context.Background())
	stop(errTaskStopped)
	stopping, shutdown := context.WithCancel(context.Background())
	shutdown()
	cases := []struct {
		name string
		ctx  context.Context
		err  error
		want lpmv1.Reason
	}{
		{name: "kubelet reason", ctx: context.Background(),
			err: fmt.Errorf("checkpoint: %w", &kubelet.Error{Reason: lpmv1.ReasonPodGone}), want: lpmv1.ReasonPodGone},
		{name: "deadline", ctx: expired, err: errors.New("rpc error"), want: lpmv1.ReasonCheckpointTimedOut},
		{name: "other", ctx: context.Background(), err: errors.New("boom"), want: lpmv1.ReasonCheckpointFailed},
		{name: "task stopped", ctx: stopped, err: fmt.Errorf("checkpoint: %w",
			&kubelet.Error{Reason: lpmv1.ReasonCheckpointTimedOut}), want: lpmv1.ReasonCancelled},
		{name: "agent stopping", ctx: stopping, err: fmt.Errorf("checkpoint: %w",
			&kubelet.Error{Reason: lpmv1.ReasonCheckpointTimedOut}), want: lpmv1.ReasonAgentRestarted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkpointReason(tc.ctx, tc.err); got != tc.want {
				t.Errorf("checkpointReason() = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestDiskFullReason(t *testing.T) {
	cases := []struct {
		name   string
		reason lpmv1.Reason
		err    error
		want   lpmv1.Reason
	}{
		{name: "kubelet text", reason: lpmv1.ReasonCheckpointFailed,
			err:  errors.New("kubelet returned 500: write /var/lib/kubelet/checkpoints/x: no space left on device"),
			want: lpmv1.ReasonNodeDiskFull},
		{name: "state write", reason: lpmv1.ReasonInternalError,
			err:  fmt.Errorf("failed to write state: %w", &os.PathError{Op: "write", Err: syscall.ENOSPC}),
			want: lpmv1.ReasonNodeDiskFull},
		{name: "quota", reason: lpmv1.ReasonImageBuildFailed,
			err: fmt.Errorf("failed to write layer: %w", syscall.EDQUOT), want: lpmv1.ReasonNodeDiskFull},
		{name: "import text", reason: lpmv1.ReasonImportFailed,
			err: errors.New("failed to commit: No space left on device"), want: lpmv1.ReasonNodeDiskFull},
		{name: "other failure", reason: lpmv1.ReasonCheckpointFailed, err: errors.New("criu failed"),
			want: lpmv1.ReasonCheckpointFailed},
		{name: "reason of another kind", reason: lpmv1.ReasonPodGone,
			err: errors.New("no space left on device"), want: lpmv1.ReasonPodGone},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := diskFullReason(tc.reason, tc.err); got != tc.want {
				t.Errorf("diskFullReason(%s, %q) = %s, want %s", tc.reason, tc.err, got, tc.want)
			}
		})
	}
}

func TestReplacingMergePatch(t *testing.T) {
	old := &lpmv1.SourceAgentStatus{Frozen: true, Endpoint: "10.0.0.1:10351", LogPath: "/var/lib/lpm/logs/u",
		VolumeData: &lpmv1.VolumeDataStatus{Image: "localhost/lpm/v", DataBytes: 3}}
	updated := old.DeepCopy()
	updated.Frozen = false
	updated.VolumeData.DataBytes = 0
	updated.Endpoint = "10.0.0.2:10351"

	got, err := replacingMergePatch(old, updated)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"frozen": nil, "endpoint": "10.0.0.2:10351", "logPath": "/var/lib/lpm/logs/u",
		"volumeData": map[string]any{"image": "localhost/lpm/v", "dataBytes": nil}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("replacingMergePatch() mismatch (-want +got):\n%s", diff)
	}

	fromNothing, err := replacingMergePatch((*lpmv1.SourceAgentStatus)(nil), &lpmv1.SourceAgentStatus{Frozen: true})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]any{"frozen": true}, fromNothing); diff != "" {
		t.Errorf("replacingMergePatch(nil) mismatch (-want +got):\n%s", diff)
	}
}

func TestRestoreProblem(t *testing.T) {
	cases := []struct {
		info    runtime.Info
		wantErr bool
	}{
		{info: runtime.Info{Name: "containerd", Version: "v2.3.7", RestoreViaCreate: true, CRIUEnabled: true}},
		{info: runtime.Info{Name: "containerd", Version: "v2.1.3", CRIUEnabled: true}},
		{info: runtime.Info{Name: "containerd", Version: "v2.3.7", CRIUEnabled: true}, wantErr: true},
		{info: runtime.Info{Name: "containerd", Version: "v2.4.0", RestoreViaCreate: true, CRIUEnabled: true},
			wantErr: true},
		{info: runtime.Info{Name: "containerd", Version: "v2.3.7", RestoreViaCreate: true}, wantErr: true},
		{info: runtime.Info{Name: "cri-o", Version: "1.34.0", CRIUEnabled: true}, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s %s", tc.info.Name, tc.info.Version), func(t *testing.T) {
			if problem := restoreProblem(&tc.info); (problem != "") != tc.wantErr {
				t.Errorf("restoreProblem() = %q, want a problem: %v", problem, tc.wantErr)
			}
		})
	}
}

func TestParseProcStatus(t *testing.T) {
	cases := []struct {
		name    string
		data    string
		want    *procStatus
		wantErr bool
	}{
		{name: "root with all capabilities", data: "Name:\tapp\nUid:\t0\t0\t0\t0\nCapEff:\t000001ffffffffff\n",
			want: &procStatus{EffectiveUID: 0, CapEff: 0x1ffffffffff}},
		{name: "user 1000", data: "Uid:\t1000\t1000\t1000\t1000\nCapEff:\t0000000000000000\n",
			want: &procStatus{EffectiveUID: 1000}},
		{name: "no uid", data: "Name:\tapp\n", wantErr: true},
		{name: "bad capability set", data: "Uid:\t0\t0\t0\t0\nCapEff:\tzz\n", wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcStatus(tc.data)
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseProcStatus() error = %v, want error %v", err, tc.wantErr)
			}
			if tc.want != nil && *got != *tc.want {
				t.Errorf("parseProcStatus() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestObservedReadyTime(t *testing.T) {
	transition := time.Date(2026, 12, 4, 12, 0, 4, 0, time.UTC)
	micro := func(d time.Duration) *metav1.MicroTime { return &metav1.MicroTime{Time: transition.Add(d)} }
	cases := []struct {
		name     string
		status   corev1.ConditionStatus
		reported *metav1.MicroTime
		now      time.Time
		want     *metav1.MicroTime
	}{
		{name: "not ready", status: corev1.ConditionFalse, now: transition.Add(time.Second)},
		{name: "not ready keeps the report", status: corev1.ConditionFalse, reported: micro(-time.Second),
			now: transition.Add(time.Second), want: micro(-time.Second)},
		{name: "first observation", status: corev1.ConditionTrue, now: transition.Add(137 * time.Millisecond),
			want: micro(137 * time.Millisecond)},
		{name: "report of this ready period kept", status: corev1.ConditionTrue,
			reported: micro(137 * time.Millisecond), now: transition.Add(3 * time.Second),
			want: micro(137 * time.Millisecond)},
		{name: "report of an earlier ready period replaced", status: corev1.ConditionTrue,
			reported: micro(-10 * time.Second), now: transition.Add(250 * time.Millisecond),
			want: micro(250 * time.Millisecond)},
		{name: "late observation cut to the second's end", status: corev1.ConditionTrue,
			now: transition.Add(30 * time.Second), want: micro(time.Second)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
				{Type: corev1.PodReady, Status: tc.status, LastTransitionTime: metav1.NewTime(transition)},
			}}}
			got := observedReadyTime(pod, tc.reported, tc.now)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("observedReadyTime() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHasTmpDirectory(t *testing.T) {
	cases := []struct {
		name    string
		prepare func(t *testing.T, root string)
		want    bool
	}{
		{name: "directory", prepare: func(t *testing.T, root string) { mustMkdir(t, filepath.Join(root, "tmp")) },
			want: true},
		{name: "missing", prepare: func(*testing.T, string) {}},
		{name: "file", prepare: func(t *testing.T, root string) {
			if err := os.WriteFile(filepath.Join(root, "tmp"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "symbolic link to a directory", prepare: func(t *testing.T, root string) {
			mustMkdir(t, filepath.Join(root, "var", "tmp"))
			if err := os.Symlink("/var/tmp", filepath.Join(root, "tmp")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			tc.prepare(t, root)
			got, err := hasTmpDirectory(root)
			if err != nil {
				t.Fatalf("hasTmpDirectory() error = %v", err)
			}
			if got != tc.want {
				t.Errorf("hasTmpDirectory() = %v, want %v", got, tc.want)
			}
		})
	}
}

func mustMkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestCollectLogs(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	store, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{store: store, clock: clocktesting.NewFakeClock(now),
		opts: Options{LogMaxAge: 24 * time.Hour, LogMaxCount: 2}}
	// Each log directory is a migration's UID, last written that long ago.
	ages := map[string]time.Duration{
		"live-old":  48 * time.Hour,
		"newest":    time.Minute,
		"second":    time.Hour,
		"third":     2 * time.Hour,
		"too-old":   25 * time.Hour,
		"fourth":    3 * time.Hour,
		"also-live": 30 * time.Hour,
	}
	for uid, age := range ages {
		dir := a.logDir(uid)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "counter-dump.log"), []byte("log"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(dir, now.Add(-age), now.Add(-age)); err != nil {
			t.Fatal(err)
		}
	}

	live := map[string]bool{"live-old": true, "also-live": true}
	if err := a.collectLogs(context.Background(), live); err != nil {
		t.Fatalf("collectLogs() error = %v", err)
	}
	entries, err := os.ReadDir(filepath.Join(store.Dir(), "logs"))
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, e := range entries {
		kept = append(kept, e.Name())
	}
	want := []string{"also-live", "live-old", "newest", "second"}
	if diff := cmp.Diff(want, kept); diff != "" {
		t.Errorf("kept log directories mismatch (-want +got):\n%s", diff)
	}
}

func TestCollectLogsWithoutDirectory(t *testing.T) {
	store, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{store: store, clock: clocktesting.NewFakeClock(time.Now()),
		opts: Options{LogMaxAge: time.Hour, LogMaxCount: 1}}
	if err := a.collectLogs(context.Background(), nil); err != nil {
		t.Errorf("collectLogs() without a logs directory error = %v, want nil", err)
	}
}
