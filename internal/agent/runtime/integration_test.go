package runtime_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/lpm-dev/lpm/internal/agent/archive"
	"github.com/lpm-dev/lpm/internal/agent/ckptimage"
	"github.com/lpm-dev/lpm/internal/agent/internal/archivetest"
	"github.com/lpm-dev/lpm/internal/agent/internal/noderoot"
	"github.com/lpm-dev/lpm/internal/agent/internal/testenv"
	"github.com/lpm-dev/lpm/internal/agent/runtime"
)

type testNode struct {
	node *noderoot.Node
	rt   *runtime.Runtime
}

func startNode(ctx context.Context, t *testing.T, name string, reg *testenv.Registry, images testenv.Images,
	mutate func(*noderoot.Config)) *testNode {
	t.Helper()
	cfg := noderoot.Config{Name: name, SandboxImage: images.Pause, Registry: reg.Host, RestoreViaCreate: true}
	if mutate != nil {
		mutate(&cfg)
	}
	node := noderoot.Start(t, cfg)
	rt, err := runtime.Connect(ctx, node.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	for _, ref := range []string{images.Pause, images.Counter} {
		if _, err := rt.PullImage(ctx, ref, nil); err != nil {
			t.Fatalf("PullImage(%s) error = %v", ref, err)
		}
	}
	return &testNode{node: node, rt: rt}
}

// TestCheckpointImportRestore checkpoints a running counter through the
// CRI (the call the kubelet makes), builds its checkpoint image, imports
// it, and creates a container from it through the CRI: the counter must
// continue from its checkpointed count.
func TestCheckpointImportRestore(t *testing.T) {
	noderoot.RequireComponents(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	reg := testenv.StartRegistry(t)
	images := testenv.PushWorkloadImages(t, reg)
	n := startNode(ctx, t, "rt", reg, images, nil)
	cri := n.rt.CRI()

	info, err := n.rt.Info(ctx)
	if err != nil {
		t.Fatalf("Info() error = %v", err)
	}
	if info.Name != "containerd" || info.Version != "v2.3.7" || !info.RestoreViaCreate || info.Pid == 0 {
		t.Errorf("Info() = %+v, want containerd v2.3.7 with restore via create and a PID", info)
	}

	pod := testenv.RunPod(ctx, t, cri, n.node.CgroupParent, n.node.LogDir, "source", "uid-source")
	id := testenv.StartContainer(ctx, t, cri, pod, "counter", images.Counter)
	logPath := filepath.Join(pod.LogDir, "counter.log")
	testenv.WaitForCount(t, logPath, 5, 30*time.Second)

	// Freeze first, then dump: this is the order the agent uses to cut a
	// multi-container pod consistently.
	if err := n.rt.Pause(ctx, id); err != nil {
		t.Fatalf("Pause() error = %v", err)
	}
	frozenAt := lastCount(t, logPath)
	start := time.Now()
	ckptCtx, ckptCancel := context.WithTimeout(ctx, 60*time.Second)
	_, err = cri.CheckpointContainer(ckptCtx, &runtimeapi.CheckpointContainerRequest{
		ContainerId: id, Location: "/var/log/lpm/checkpoint.tar", Timeout: 50})
	ckptCancel()
	if err != nil {
		t.Fatalf("CheckpointContainer of a paused container error = %v", err)
	}
	t.Logf("checkpoint of a paused container took %s", time.Since(start))
	state, err := n.rt.TaskStatus(ctx, id)
	if err != nil || state != runtime.TaskPaused {
		t.Errorf("task state after checkpoint = %s, %v; want paused (CRIU must leave a frozen cgroup frozen)",
			state, err)
	}
	time.Sleep(500 * time.Millisecond)
	if got := lastCount(t, logPath); got != frozenAt {
		t.Errorf("count moved from %d to %d while paused", frozenAt, got)
	}

	// A paused container rejects exec, which the kubelet's exec probes use.
	_, err = cri.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"/app"}, Timeout: 2})
	if err == nil || !strings.Contains(err.Error(), "paused") {
		t.Errorf("ExecSync on a paused container error = %v, want an error about the paused state", err)
	}

	archivePath := filepath.Join(n.node.LogDir, "checkpoint.tar")
	img := buildImage(t, archivePath, "counter")
	name := ckptimage.DirectReference("default", "source", "counter", "4f1d2c3b-0000")
	// The test reads the node's /proc, as the agent does, so the layer goes
	// straight into its snapshot and never into the content store.
	res, err := n.rt.Import(ctx, runtime.ImportRequest{Name: name, Index: img.Descriptor(), ProcRoot: "/proc",
		Labels: map[string]string{"lpm.dev/migration-uid": "4f1d2c3b-0000"}}, img)
	if err != nil {
		t.Fatalf("Import() error = %v", err)
	}
	if !res.IntoSnapshot {
		t.Errorf("Import() went through the content store, want straight into the snapshot")
	}
	if _, err := n.rt.Client().ContentStore().Info(ctx, res.Layer.Digest); !errdefs.IsNotFound(err) {
		t.Errorf("content store Info(layer) error = %v, want not found: the layer must not be copied there", err)
	}
	if _, err := n.rt.Client().SnapshotService("overlayfs").Stat(ctx, res.Layer.Digest.String()); err != nil {
		t.Errorf("snapshot of the layer: %v", err)
	}
	if _, err := n.rt.WaitForCRIImage(ctx, name); err != nil {
		t.Fatalf("WaitForCRIImage() error = %v", err)
	}

	// The kubelet stops the source with a SIGTERM and, after the grace
	// period, SIGKILL; containerd's runc shim thaws for the kill.
	stopStart := time.Now()
	_, err = cri.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 2})
	t.Logf("StopContainer on a paused container returned %v after %s", err, time.Since(stopStart))
	testenv.StopPod(ctx, t, cri, pod)

	restoredPod := testenv.RunPod(ctx, t, cri, n.node.CgroupParent, n.node.LogDir, "restored", "uid-restored")
	restoredID := testenv.StartContainer(ctx, t, cri, restoredPod, "counter", name)
	restoredLog := filepath.Join(restoredPod.LogDir, "counter.log")
	testenv.WaitForCount(t, restoredLog, frozenAt+5, 30*time.Second)
	assertContinued(t, testenv.Counts(t, restoredLog), frozenAt)

	restored, err := n.rt.ContainerRestored(ctx, restoredID)
	if err != nil || !restored {
		t.Errorf("ContainerRestored() = %v, %v; want true", restored, err)
	}
	testenv.StopPod(ctx, t, cri, restoredPod)
	if _, err := cri.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: restoredID}); err != nil &&
		!strings.Contains(err.Error(), "not found") {
		t.Logf("RemoveContainer: %v", err)
	}
	if err := n.rt.RemoveImage(ctx, name); err != nil {
		t.Errorf("RemoveImage() error = %v", err)
	}
	if left, err := n.rt.ListImages(ctx, `labels."lpm.dev/migration-uid"`); err != nil || len(left) != 0 {
		t.Errorf("images left after RemoveImage: %v, %v", left, err)
	}
}

func lastCount(t *testing.T, logPath string) int {
	t.Helper()
	counts := testenv.Counts(t, logPath)
	if len(counts) == 0 {
		t.Fatalf("no counts in %s", logPath)
	}
	return counts[len(counts)-1]
}

// assertContinued checks that a restored counter's log never starts over:
// the counts keep increasing past the checkpointed count.
func assertContinued(t *testing.T, counts []int, checkpointed int) {
	t.Helper()
	for i := 1; i < len(counts); i++ {
		if counts[i] <= counts[i-1] {
			t.Fatalf("count went from %d to %d: the process started over (counts %v)", counts[i-1], counts[i],
				counts)
		}
	}
	if len(counts) == 0 || counts[len(counts)-1] <= checkpointed {
		t.Fatalf("counts %v do not pass the checkpointed count %d", counts, checkpointed)
	}
}

func buildImage(t *testing.T, archivePath, container string) *ckptimage.Image {
	t.Helper()
	f, err := os.Open(archivePath)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	info, err := archive.Inspect(f, archive.Limits{})
	if err != nil {
		t.Fatalf("Inspect() of a real archive error = %v", err)
	}
	if info.Stats == nil || info.Stats.PagesWritten == 0 {
		t.Errorf("Stats = %+v, want dump statistics with pages written", info.Stats)
	}
	img, err := ckptimage.Build(ckptimage.Source{ArchivePath: archivePath, Archive: info, Container: container,
		Pod: "source", Namespace: "default", MigrationUID: "4f1d2c3b-0000",
		Platform: v1.Platform{OS: "linux", Architecture: "amd64"}})
	if err != nil {
		t.Fatalf("Build() error = %v", err)
	}
	return img
}

// startBareNode starts a node with no image and connects to its runtime.
func startBareNode(ctx context.Context, t *testing.T, name string) *runtime.Runtime {
	t.Helper()
	noderoot.RequireComponents(t)
	node := noderoot.Start(t, noderoot.Config{Name: name, SandboxImage: "localhost/none:v1", RestoreViaCreate: true})
	rt, err := runtime.Connect(ctx, node.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	return rt
}

// buildSyntheticImage writes a synthetic archive to path and builds its
// checkpoint image.
func buildSyntheticImage(t *testing.T, path string) (*ckptimage.Image, *archive.Info) {
	t.Helper()
	archivetest.WriteFile(t, path, archivetest.Options{PagesBytes: 1 << 20})
	return testenv.BuildCheckpointImage(t, path, "synthetic")
}

// TestImportAlteredLayer imports an image whose layer changed after the
// image was built: the import into the snapshot must fail with a digest
// mismatch and leave no snapshot, no content and no image behind.
func TestImportAlteredLayer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rt := startBareNode(ctx, t, "altered")
	path := filepath.Join(t.TempDir(), "checkpoint.tar")
	img, info := buildSyntheticImage(t, path)
	w, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("altered"), info.Size/2); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()

	name := "localhost/lpm/altered/counter:1"
	_, err = rt.Import(ctx, runtime.ImportRequest{Name: name, Index: img.Descriptor(), ProcRoot: "/proc"}, img)
	if !errors.Is(err, runtime.ErrDigestMismatch) {
		t.Fatalf("Import() of an altered layer error = %v, want %v", err, runtime.ErrDigestMismatch)
	}
	sn := rt.Client().SnapshotService("overlayfs")
	if _, err := sn.Stat(ctx, img.Layer.Digest.String()); !errdefs.IsNotFound(err) {
		t.Errorf("snapshot of the altered layer: Stat() error = %v, want not found", err)
	}
	var left []string
	if err := sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		left = append(left, info.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("snapshots left after a failed import: %v", left)
	}
	if _, err := rt.Client().ImageService().Get(ctx, name); !errdefs.IsNotFound(err) {
		t.Errorf("image of a failed import: Get() error = %v, want not found", err)
	}
}

// TestImportWrongProcRoot imports with a ProcRoot under which containerd's
// PID is not containerd: the importer must not write there and must take
// the content store instead.
func TestImportWrongProcRoot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rt := startBareNode(ctx, t, "wrongproc")
	img, _ := buildSyntheticImage(t, filepath.Join(t.TempDir(), "checkpoint.tar"))

	// A directory that stands for another process's root holds the path
	// of the snapshot's directory, with a file in it.
	procRoot := t.TempDir()
	server, err := rt.Client().IntrospectionService().Server(ctx)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(procRoot, strconv.FormatUint(server.Pid, 10), "root")
	snapshotsDir := filepath.Join(root, "var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots")
	for i := 1; i <= 3; i++ {
		fs := filepath.Join(snapshotsDir, strconv.Itoa(i), "fs")
		if err := os.MkdirAll(fs, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(fs, "keep"), []byte("not a snapshot"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	name := "localhost/lpm/wrongproc/counter:1"
	res, err := rt.Import(ctx, runtime.ImportRequest{Name: name, Index: img.Descriptor(), ProcRoot: procRoot}, img)
	if err != nil {
		t.Fatalf("Import() error = %v", err)
	}
	if res.IntoSnapshot {
		t.Errorf("Import() went into the snapshot through a ProcRoot that is not containerd's")
	}
	if _, err := rt.WaitForCRIImage(ctx, name); err != nil {
		t.Errorf("WaitForCRIImage() error = %v", err)
	}
	if _, err := rt.Client().ContentStore().Info(ctx, digest.Digest(img.Layer.Digest.String())); err != nil {
		t.Errorf("content store Info(layer) error = %v, want the layer there", err)
	}
	var written []string
	_ = filepath.WalkDir(root, func(path string, d os.DirEntry, _ error) error {
		if d != nil && !d.IsDir() && d.Name() != "keep" {
			written = append(written, path)
		}
		return nil
	})
	if len(written) != 0 {
		t.Errorf("files written under the wrong ProcRoot: %v", written)
	}
}

// TestAbortImports leaves extraction snapshots and an unfinished ingest
// as broken transfers of two migrations do, and aborts those of one.
func TestAbortImports(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rt := startBareNode(ctx, t, "abort")
	sn := rt.Client().SnapshotService("overlayfs")
	cs := rt.Client().ContentStore()
	chainID := digest.FromString("layer").String()
	keys := map[string]string{
		"gone": "extract-lpm-gone-uid-" + digest.FromString("layer").Encoded() + "-a1 " + chainID,
		"live": "extract-lpm-live-uid-" + digest.FromString("layer").Encoded() + "-b2 " + chainID,
		// containerd's own unpacking names its keys extract-<time>-<random>.
		"containerd": "extract-1733300000-abc " + chainID,
	}
	// An import prepares its snapshot under a lease, which keeps it from
	// containerd's garbage collection.
	leased, done, err := rt.Client().WithLease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = done(context.WithoutCancel(ctx)) }()
	for _, key := range keys {
		if _, err := sn.Prepare(leased, key, ""); err != nil {
			t.Fatalf("Prepare(%q) error = %v", key, err)
		}
	}
	// An import's lease carries the migration's prefix in its ID.
	ls := rt.Client().LeasesService()
	leaseIDs := map[string]string{"gone": "lpm-gone-uid-lease-a1", "live": "lpm-live-uid-lease-b2"}
	for _, id := range leaseIDs {
		if _, err := ls.Create(ctx, leases.WithID(id)); err != nil {
			t.Fatalf("Create(lease %q) error = %v", id, err)
		}
	}
	w, err := content.OpenWriter(leased, cs, content.WithRef("lpm-gone-uid-ingest"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("partial")); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()

	// containerd closes the ingest's files a moment after the client closed
	// the writer, and an abort before that fails with "directory not
	// empty". The agent's collection retries, and so does the test.
	live := func(ref string) bool { return strings.HasPrefix(ref, "lpm-live-uid-") }
	for attempt := 1; ; attempt++ {
		err := rt.AbortImports(ctx, "", "lpm-", live)
		if err == nil {
			break
		}
		if attempt == 20 {
			t.Fatalf("AbortImports() error = %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for name, key := range keys {
		_, err := sn.Stat(ctx, key)
		if name == "gone" && !errdefs.IsNotFound(err) {
			t.Errorf("snapshot %q of a finished migration: Stat() error = %v, want not found", key, err)
		}
		if name != "gone" && err != nil {
			t.Errorf("snapshot %q: Stat() error = %v, want it kept", key, err)
		}
	}
	if _, err := cs.Status(ctx, "lpm-gone-uid-ingest"); !errdefs.IsNotFound(err) {
		t.Errorf("ingest of a finished migration: Status() error = %v, want not found", err)
	}
	left, err := ls.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	remaining := map[string]bool{}
	for _, l := range left {
		remaining[l.ID] = true
	}
	if remaining[leaseIDs["gone"]] {
		t.Errorf("lease %q of a finished migration kept, want it deleted", leaseIDs["gone"])
	}
	if !remaining[leaseIDs["live"]] {
		t.Errorf("lease %q of a running migration deleted, want it kept", leaseIDs["live"])
	}
}
