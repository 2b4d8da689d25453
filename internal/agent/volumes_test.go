package agent_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/agent/internal/testenv"
	"github.com/lpm-dev/lpm/internal/volumedata"
)

// copiers holds the copier built for each test.
var copiers sync.Map

// copierBinary builds cmd/lpm-volume-restore into the test's temporary
// directory, once per test, as the agent's image carries it.
func copierBinary(t *testing.T) string {
	t.Helper()
	if path, ok := copiers.Load(t); ok {
		return path.(string)
	}
	path := filepath.Join(t.TempDir(), "lpm-volume-restore")
	cmd := exec.Command("go", "build", "-trimpath", "-o", path, "../../cmd/lpm-volume-restore")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("failed to build the volume copier: %v: %s", err, out)
	}
	copiers.Store(t, path)
	t.Cleanup(func() { copiers.Delete(t) })
	return path
}

// kubeletPodsDir is the directory the node's agent reads pods' emptyDir
// volumes from, as the kubelet's /var/lib/kubelet/pods.
func kubeletPodsDir(n *agentNode) string {
	return filepath.Join(n.node.Dir, "kubelet-pods")
}

// withEmptyDirs adds a disk-backed and a memory-backed emptyDir volume.
func withEmptyDirs(p *corev1.Pod) {
	p.Spec.Volumes = append(p.Spec.Volumes,
		corev1.Volume{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		corev1.Volume{Name: "shm", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			Medium: corev1.StorageMediumMemory}}})
}

// createVolumes creates the pod's emptyDir directories where the kubelet
// would, the memory-backed one as a tmpfs, and returns them by name.
func createVolumes(t *testing.T, n *agentNode, pod *corev1.Pod) map[string]string {
	t.Helper()
	dirs := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		if v.EmptyDir == nil {
			continue
		}
		dir := volumedata.PodVolumeDir(kubeletPodsDir(n), string(pod.UID), v.Name)
		if err := os.MkdirAll(dir, 0o777); err != nil {
			t.Fatal(err)
		}
		if v.EmptyDir.Medium == corev1.StorageMediumMemory {
			if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64m"); err != nil {
				t.Fatalf("failed to mount a tmpfs at %s: %v", dir, err)
			}
			t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
		}
		dirs[v.Name] = dir
	}
	return dirs
}

func writeFile(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

// tree returns each path below dir with its mode, owner and contents.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		st := info.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%s %d:%d %s", info.Mode(), st.Uid, st.Gid, info.ModTime().UTC().Format(time.RFC3339Nano))
		switch {
		case info.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		case info.Mode().IsRegular():
			data, _ := os.ReadFile(p)
			desc += " " + string(data)
		}
		if rel != "." {
			out[rel] = desc
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMigrateEmptyDirVolumes packs a pod's disk-backed and memory-backed
// emptyDir volumes at the cut, moves the volume data image by direct
// transfer and through a registry, imports it on the target and runs its
// copier through the CRI into fresh volumes, which then hold what the
// source's volumes held.
func TestMigrateEmptyDirVolumes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		registry bool
	}{
		{name: "direct"},
		{name: "registry", registry: true},
	} {
		t.Run(tc.name, func(t *testing.T) { moveEmptyDirVolumes(t, tc.registry) })
	}
}

func moveEmptyDirVolumes(t *testing.T, registry bool) {
	w := newWorld(t)
	a, b := w.addNode("node-a", nodeOptions{}), w.addNode("node-b", nodeOptions{})
	src := w.runCounter(a, "web", withEmptyDirs)
	dirs := createVolumes(t, a, src.pod)
	writeFile(t, filepath.Join(dirs["cache"], "db", "state.json"), `{"count":42}`, 0o600)
	writeFile(t, filepath.Join(dirs["cache"], "owned"), "by 1234", 0o640)
	if err := os.Lchown(filepath.Join(dirs["cache"], "owned"), 1234, 4321); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("db/state.json", filepath.Join(dirs["cache"], "current")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dirs["shm"], "session"), "in memory", 0o644)
	want := map[string]map[string]string{"cache": tree(t, dirs["cache"]), "shm": tree(t, dirs["shm"])}
	var mutate func(*lpmv1.PodMigration)
	if registry {
		// The test registry accepts anonymous pushes to this repository.
		mutate = func(pm *lpmv1.PodMigration) {
			pm.Spec.Transfer = &lpmv1.Transfer{Mode: lpmv1.TransferModeRegistry,
				Registry: &lpmv1.RegistryTransfer{Repository: w.reg.Host + "/volumes"}}
		}
	}

	pm := w.checkpointAndServe(src, b, mutate)
	cur := w.get(pm)
	vd := cur.Status.Source.VolumeData
	if vd == nil {
		t.Fatalf("source reported no volume data: %+v", cur.Status.Source)
	}
	if diff := cmp.Diff([]string{"cache", "shm"}, vd.Volumes); diff != "" {
		t.Errorf("carried volumes (-want +got):\n%s", diff)
	}
	if wantBytes := int64(len(`{"count":42}`) + len("by 1234") + len("in memory")); vd.DataBytes != wantBytes {
		t.Errorf("dataBytes = %d, want %d", vd.DataBytes, wantBytes)
	}
	if registry && !strings.HasPrefix(vd.Image, w.reg.Host+"/volumes@sha256:") {
		t.Errorf("volume data image = %q, want a digest reference in the registry", vd.Image)
	}
	layer := filepath.Join(a.stateDir, "volumes", string(pm.UID)+".tar")
	if info, err := os.Stat(layer); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("volume data layer %s: %v, err %v; want mode 0600", layer, info, err)
	}

	requireTrue(t, w.waitCondition(pm, "target", lpmv1.AgentConditionImagesReady), "target ImagesReady")
	image := w.get(pm).Status.Target.VolumeDataImage
	if image == "" || image != vd.Image {
		t.Fatalf("target volumeDataImage = %q, want %q", image, vd.Image)
	}
	restored := runCopier(t, w, b, image, []string{"cache", "shm"})
	for name, files := range want {
		if len(files) == 0 {
			t.Fatalf("volume %s of the source holds nothing to compare", name)
		}
		if diff := cmp.Diff(files, tree(t, restored[name])); diff != "" {
			t.Errorf("volume %s after the copier (-source +restored):\n%s", name, diff)
		}
	}

	w.setPhase(pm, lpmv1.PhaseFailed)
	requireTrue(t, w.waitCondition(pm, "source", lpmv1.AgentConditionCleanedUp), "source CleanedUp")
	requireTrue(t, w.waitCondition(pm, "target", lpmv1.AgentConditionCleanedUp), "target CleanedUp")
	if _, err := os.Stat(layer); !os.IsNotExist(err) {
		t.Errorf("volume data layer left after the rollback (err %v)", err)
	}
	if img, err := b.rt.CRIImageStatus(w.ctx, image); err == nil && img != nil {
		t.Errorf("volume data image %s left on the target after the rollback", image)
	}
}

// runCopier runs the volume data image as the restored pod's init
// container would, with an empty directory mounted for each volume, and
// returns those directories on the host.
func runCopier(t *testing.T, w *world, n *agentNode, image string, volumes []string) map[string]string {
	t.Helper()
	pod := testenv.RunPod(w.ctx, t, n.rt.CRI(), n.node.CgroupParent, n.node.LogDir, "web-restored",
		"restored-uid")
	t.Cleanup(func() { testenv.StopPod(w.ctx, t, n.rt.CRI(), pod) })
	dirs := map[string]string{}
	var mounts []*runtimeapi.Mount
	for _, v := range volumes {
		// The node sees the host's LogDir at /var/log/lpm.
		dirs[v] = filepath.Join(n.node.LogDir, "volumes", v)
		if err := os.MkdirAll(dirs[v], 0o777); err != nil {
			t.Fatal(err)
		}
		mounts = append(mounts, &runtimeapi.Mount{ContainerPath: volumedata.MountPath(v),
			HostPath: "/var/log/lpm/volumes/" + v})
	}
	resp, err := n.rt.CRI().CreateContainer(w.ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: pod.ID,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: volumedata.ContainerName},
			Image:    &runtimeapi.ImageSpec{Image: image},
			Command:  []string{volumedata.CopierPath},
			Mounts:   mounts,
			LogPath:  volumedata.ContainerName + ".log",
			Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
				ReadonlyRootfs: true}},
		},
		SandboxConfig: pod.Config,
	})
	if err != nil {
		t.Fatalf("CreateContainer from the volume data image: %v", err)
	}
	id := resp.GetContainerId()
	if _, err := n.rt.CRI().StartContainer(w.ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	var status *runtimeapi.ContainerStatus
	w.waitFor("the copier to exit", func() bool {
		st, err := n.rt.CRI().ContainerStatus(w.ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
		status = st.GetStatus()
		return err == nil && status.GetState() == runtimeapi.ContainerState_CONTAINER_EXITED
	})
	if status.GetExitCode() != 0 {
		log, _ := os.ReadFile(filepath.Join(pod.LogDir, volumedata.ContainerName+".log"))
		t.Fatalf("copier exited with %d: %s\n%s", status.GetExitCode(), status.GetMessage(), log)
	}
	return dirs
}

// TestVolumeTooLargeRejectedBeforeCut checks that a pod whose emptyDir
// holds more than the agent's limit fails Prepared while it runs on.
func TestVolumeTooLargeRejectedBeforeCut(t *testing.T) {
	w := newWorld(t)
	a, b := w.addNode("node-a", nodeOptions{}), w.addNode("node-b", nodeOptions{})
	src := w.runCounter(a, "big", func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "cache",
			VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	})
	dirs := createVolumes(t, a, src.pod)
	// A sparse file: its size counts, not the blocks it uses.
	f, err := os.Create(filepath.Join(dirs["cache"], "big"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(2 << 30); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()

	pm := w.newMigration(src, b.name, nil)

	requireFalse(t, w.waitCondition(pm, "source", lpmv1.AgentConditionPrepared), "source Prepared",
		lpmv1.ReasonVolumeTooLarge)
	if cur := w.get(pm); cur.Status.Source.CutTime != nil {
		t.Errorf("source was cut at %v, want no checkpoint", cur.Status.Source.CutTime)
	}
}
