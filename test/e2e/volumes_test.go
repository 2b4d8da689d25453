//go:build e2e

package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/volumedata"
	"github.com/lpm-dev/lpm/lab/workload"
)

// TestMigrateCarriesEmptyDirVolumes writes a file into a disk-backed and
// a memory-backed emptyDir volume through the pod's HTTP server before the
// move, and reads both back from the restored pod on node B. The restored
// pod restores them in its only regular init container.
func TestMigrateCarriesEmptyDirVolumes(t *testing.T) {
	requireLPM(t)
	ns := newNamespace(t)
	pod := workload.CounterPod(ns, "volumes", nodeA)
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{
		{Name: "disk", MountPath: "/disk"}, {Name: "memory", MountPath: "/memory"}}
	pod.Spec.Volumes = []corev1.Volume{
		{Name: "disk", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "memory", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			Medium: corev1.StorageMediumMemory}}},
	}
	pod = createPod(t, pod)
	onDisk := strings.Repeat("0123456789abcdef", 64<<10)
	inMemory := "written to a memory-backed emptyDir"
	if err := httpPut(t, pod.Status.PodIP, "/file?path=/disk/data", onDisk); err != nil {
		t.Fatal(err)
	}
	if err := httpPut(t, pod.Status.PodIP, "/file?path=/memory/session", inMemory); err != nil {
		t.Fatal(err)
	}

	pm := migrate(t, ns, "volumes", lpmv1.PodMigrationSpec{PodName: "volumes", TargetNode: nodeB})

	restored := requireMoved(t, ns, "volumes", pm, nodeB, 0)
	if got, err := httpGet(t, restored.Status.PodIP, "/file?path=/disk/data"); err != nil || got != onDisk {
		t.Errorf("disk-backed emptyDir file after the move: %d bytes, %v; want %d bytes", len(got), err,
			len(onDisk))
	}
	if got, err := httpGet(t, restored.Status.PodIP, "/file?path=/memory/session"); err != nil || got != inMemory {
		t.Errorf("memory-backed emptyDir file after the move = %q, %v; want %q", got, err, inMemory)
	}
	if want := int64(len(onDisk) + len(inMemory)); pm.Status.VolumeDataBytes != want {
		t.Errorf("status.volumeDataBytes = %d, want %d", pm.Status.VolumeDataBytes, want)
	}
	if len(restored.Spec.InitContainers) != 1 || restored.Spec.InitContainers[0].Name != volumedata.ContainerName {
		t.Fatalf("restored pod's init containers = %+v, want only %s", restored.Spec.InitContainers,
			volumedata.ContainerName)
	}
	if s := restored.Status.InitContainerStatuses; len(s) != 1 || s[0].State.Terminated == nil ||
		s[0].State.Terminated.ExitCode != 0 {
		t.Errorf("init container status = %+v, want terminated with exit code 0", s)
	}
	t.Logf("carried %d bytes of emptyDir data", pm.Status.VolumeDataBytes)
}

// TestMigrateWithoutEmptyDirAddsNothing checks that a pod without emptyDir
// volumes moves with no volume data image and no init container.
func TestMigrateWithoutEmptyDirAddsNothing(t *testing.T) {
	requireLPM(t)
	ns := newNamespace(t)
	createPod(t, workload.CounterPod(ns, "plain", nodeA))

	pm := migrate(t, ns, "plain", lpmv1.PodMigrationSpec{PodName: "plain", TargetNode: nodeB})

	restored := requireMoved(t, ns, "plain", pm, nodeB, 0)
	if len(restored.Spec.InitContainers) != 0 {
		t.Errorf("restored pod has init containers %+v, want none", restored.Spec.InitContainers)
	}
	if pm.Status.Source != nil && pm.Status.Source.VolumeData != nil {
		t.Errorf("source reported volume data %+v for a pod without emptyDir volumes", pm.Status.Source.VolumeData)
	}
	if pm.Status.VolumeDataBytes != 0 {
		t.Errorf("status.volumeDataBytes = %d, want 0", pm.Status.VolumeDataBytes)
	}
}

// TestMeasureVolumeDowntime measures the downtime of moves whose
// disk-backed emptyDir holds a given size of random data, written in 1 MiB
// files. It runs only with LPM_MEASURE_VOLUMES set to sizes in MiB, for
// example LPM_MEASURE_VOLUMES=0,1,100, three moves per size.
func TestMeasureVolumeDowntime(t *testing.T) {
	sizes := os.Getenv("LPM_MEASURE_VOLUMES")
	if sizes == "" {
		t.Skip("set LPM_MEASURE_VOLUMES to sizes in MiB, for example 0,1,100")
	}
	requireLPM(t)
	ns := newNamespace(t)
	rng := rand.New(rand.NewPCG(1, 2))
	chunk := make([]byte, 1<<20)
	for _, field := range strings.Split(sizes, ",") {
		mib, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil {
			t.Fatalf("invalid size %q in LPM_MEASURE_VOLUMES", field)
		}
		for run := 1; run <= 3; run++ {
			name := fmt.Sprintf("measure-%d-%d", mib, run)
			pod := workload.CounterPod(ns, name, nodeA)
			pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
			pod.Spec.Volumes = []corev1.Volume{{Name: "data",
				VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			pod = createPod(t, pod)
			for i := range mib {
				for j := range chunk {
					chunk[j] = byte(rng.Uint32())
				}
				if err := httpPut(t, pod.Status.PodIP, fmt.Sprintf("/file?path=/data/f%03d", i), string(chunk)); err != nil {
					t.Fatal(err)
				}
			}

			pm := migrate(t, ns, name, lpmv1.PodMigrationSpec{PodName: name, TargetNode: nodeB})

			requireSucceeded(t, pm)
			var archive int64
			for _, c := range pm.Status.Containers {
				archive += c.ArchiveBytes
			}
			t.Logf("volume data %d MiB run %d: downtime %s, carried %d bytes, checkpoint archive %d bytes",
				mib, run, pm.Status.Downtime.Duration, pm.Status.VolumeDataBytes, archive)
		}
	}
}

// TestMigrateEmptyDirBackAndForth moves a pod with an emptyDir volume to
// node B and back. The restored pod's copier from the first move is a
// regular init container that the second move replaces with its own, and
// a file written between the moves arrives too.
func TestMigrateEmptyDirBackAndForth(t *testing.T) {
	if knownGap(t, "TestMigrateCounterAndBack") {
		t.Skip("a second hop is a known gap")
	}
	requireLPM(t)
	ns := newNamespace(t)
	pod := workload.CounterPod(ns, "hops", nodeA)
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
	pod.Spec.Volumes = []corev1.Volume{{Name: "data",
		VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	pod = createPod(t, pod)
	if err := httpPut(t, pod.Status.PodIP, "/file?path=/data/first", "before the first move"); err != nil {
		t.Fatal(err)
	}
	pm := migrate(t, ns, "hops", lpmv1.PodMigrationSpec{PodName: "hops", TargetNode: nodeB})
	there := requireMoved(t, ns, "hops", pm, nodeB, 0)
	if err := httpPut(t, there.Status.PodIP, "/file?path=/data/second", "before the second move"); err != nil {
		t.Fatal(err)
	}

	back := migrate(t, ns, there.Name, lpmv1.PodMigrationSpec{PodName: there.Name, TargetNode: nodeA})

	home := requireMoved(t, ns, there.Name, back, nodeA, 0)
	for path, want := range map[string]string{"/data/first": "before the first move",
		"/data/second": "before the second move"} {
		if got, err := httpGet(t, home.Status.PodIP, "/file?path="+path); err != nil || got != want {
			t.Errorf("%s after two moves = %q, %v; want %q", path, got, err, want)
		}
	}
	if len(home.Spec.InitContainers) != 1 || home.Spec.InitContainers[0].Image == there.Spec.InitContainers[0].Image {
		t.Errorf("init containers after two moves = %+v, want only the second move's copier", home.Spec.InitContainers)
	}
}
