//go:build e2e

package e2e

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/lab/images"
)

// The cases here run test/apps/holder, which holds one kernel object on
// request, and check each rule of the source agent's process scan on real
// nodes: the migration is rejected with the rule's reason before the cut,
// the source keeps counting, and nothing is left behind.

var holderCount = regexp.MustCompile(`(?m)^count=(\d+) `)

// holderPod returns a pod that runs the holder with the environment given,
// on the first node.
func holderPod(ns, name string, env map[string]string, mutate func(*corev1.Pod)) *corev1.Pod {
	c := corev1.Container{Name: "holder", Image: images.HolderRef, ImagePullPolicy: corev1.PullNever}
	for k, v := range env {
		c.Env = append(c.Env, corev1.EnvVar{Name: k, Value: v})
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{NodeName: nodeA, Containers: []corev1.Container{c},
			TerminationGracePeriodSeconds: ptr.To[int64](1)},
	}
	if mutate != nil {
		mutate(pod)
	}
	return pod
}

// holderCounts returns the counts a holder container printed.
func holderCounts(t *testing.T, ns, pod string, previous bool) []int {
	t.Helper()
	args := []string{"logs", "-n", ns, pod, "-c", "holder"}
	if previous {
		args = append(args, "--previous")
	}
	out, err := kubectl(t, args...)
	if err != nil {
		t.Fatalf("kubectl logs %s: %v: %s", pod, err, out)
	}
	var counts []int
	for _, m := range holderCount.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[1])
		counts = append(counts, n)
	}
	return counts
}

func lastCount(t *testing.T, ns, pod string) int {
	t.Helper()
	counts := holderCounts(t, ns, pod, false)
	if len(counts) == 0 {
		t.Fatalf("holder %s printed no count", pod)
	}
	return counts[len(counts)-1]
}

func TestProcessScanRejectsBeforeCut(t *testing.T) {
	requireLPM(t)
	tests := []struct {
		name       string
		env        map[string]string
		mutate     func(*corev1.Pod)
		wantReason lpmv1.Reason
	}{
		{name: "io-uring", env: map[string]string{"HOLDER_IO_URING": "true"}, wantReason: lpmv1.ReasonIOUringInUse},
		{name: "inotify-root", env: map[string]string{"HOLDER_INOTIFY_ROOT": "true"},
			wantReason: lpmv1.ReasonFileWatchUnsupported},
		{name: "mqueue", env: map[string]string{"HOLDER_MQUEUE": "lpmq"}, wantReason: lpmv1.ReasonMessageQueueInUse},
		{name: "deleted-file", env: map[string]string{"HOLDER_DELETED_MIB": "2"},
			wantReason: lpmv1.ReasonDeletedFileTooLarge},
		{name: "pipes", env: map[string]string{"HOLDER_PIPES": "1100"}, wantReason: lpmv1.ReasonTooManyPipesWithData},
		{name: "dev-shm", env: map[string]string{"HOLDER_OPEN": "/dev/shm/held"},
			wantReason: lpmv1.ReasonSharedMemoryFileInUse},
		{name: "volume-file", env: map[string]string{"HOLDER_READ": "/etc/podinfo/name"}, mutate: withPodInfo,
			wantReason: lpmv1.ReasonVolumeFileInUse},
		{name: "tty", mutate: func(p *corev1.Pod) { p.Spec.Containers[0].TTY, p.Spec.Containers[0].Stdin = true, true },
			wantReason: lpmv1.ReasonControllingTerminal},
		// The controller rejects hostIPC pods before the agents look at them.
		{name: "host-ipc", env: map[string]string{"HOLDER_SYSV_SHM": "true"},
			mutate: func(p *corev1.Pod) { p.Spec.HostIPC = true }, wantReason: lpmv1.ReasonHostNamespace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNamespace(t)
			pod := createPod(t, holderPod(ns, "holder-"+tc.name, tc.env, tc.mutate))
			time.Sleep(2 * time.Second)
			before := lastCount(t, ns, pod.Name)

			pm := migrate(t, ns, "move-"+tc.name, lpmv1.PodMigrationSpec{PodName: pod.Name, TargetNode: nodeB})

			requireFailed(t, pm, tc.wantReason)
			t.Logf("rejected: %s", outcome(pm))
			if pm.Status.Source != nil && pm.Status.Source.CutTime != nil {
				t.Errorf("the source was cut at %s; want a rejection before the cut", pm.Status.Source.CutTime)
			}
			if msg := outcome(pm); tc.wantReason != lpmv1.ReasonHostNamespace &&
				(!strings.Contains(msg, "process") || !strings.Contains(msg, "Fix: ")) {
				t.Errorf("failure message %q does not name the process and the fix", msg)
			}
			time.Sleep(3 * time.Second)
			if after := lastCount(t, ns, pod.Name); after <= before {
				t.Errorf("source count is %d after the rejection, was %d: the source stopped", after, before)
			}
			if left := archives(t, nodeA, ns); len(left) > 0 {
				t.Errorf("checkpoint archives left on %s: %v", nodeA, left)
			}
			if left := checkpointImages(t, nodeB, ns); len(left) > 0 {
				t.Errorf("checkpoint images left on %s: %v", nodeB, left)
			}
		})
	}
}

// TestHolderWithoutObjectsMigrates moves the same program holding none of
// the objects (and 1,000 pipes with data, under CRIU's limit): it moves
// and continues counting.
func TestHolderWithoutObjectsMigrates(t *testing.T) {
	requireLPM(t)
	ns := newNamespace(t)
	pod := createPod(t, holderPod(ns, "holder-plain", map[string]string{"HOLDER_PIPES": "1000"}, nil))
	time.Sleep(3 * time.Second)
	before := lastCount(t, ns, pod.Name)

	pm := migrate(t, ns, "move-plain", lpmv1.PodMigrationSpec{PodName: pod.Name, TargetNode: nodeB})

	requireSucceeded(t, pm)
	restored, err := clients.WaitPodReady(withContext(t), ns, pm.Status.RestoredPod, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	counts := holderCounts(t, ns, restored.Name, false)
	if len(counts) == 0 || counts[len(counts)-1] <= before {
		t.Errorf("restored counts %v do not continue past %d", counts, before)
	}
	if pm.Status.Source == nil || pm.Status.Source.LogPath == "" {
		t.Errorf("status.source.logPath is empty; want the directory of the kept CRIU logs")
	}
}

// TestRestartAfterMoveStartsFresh moves a holder that exits once a file
// exists, makes it exit after the move, and checks that the kubelet's
// restart runs the original image from count 0 instead of restoring the
// checkpoint again.
func TestRestartAfterMoveStartsFresh(t *testing.T) {
	requireLPM(t)
	ns := newNamespace(t)
	pod := createPod(t, holderPod(ns, "holder-exit", map[string]string{"HOLDER_EXIT_FILE": "/tmp/exit"}, nil))
	time.Sleep(4 * time.Second)

	pm := migrate(t, ns, "move-exit", lpmv1.PodMigrationSpec{PodName: pod.Name, TargetNode: nodeB})
	requireSucceeded(t, pm)
	restored, err := clients.WaitPodReady(withContext(t), ns, pm.Status.RestoredPod, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	before := lastCount(t, ns, restored.Name)
	if before < 3 {
		t.Fatalf("restored holder counts from %d; want it to continue past 3", before)
	}

	// The target agent points the checkpoint image at the base image once
	// the migration has succeeded.
	waitFor(t, "the checkpoint image reset to its base image", time.Minute, func() bool {
		out, err := labNode(t, nodeB).Output(testContext(t, time.Minute), "ctr", "-n", "k8s.io", "images", "ls")
		return err == nil && strings.Contains(string(out), "lpm.dev/reset-to")
	})
	if out, err := kubectl(t, "exec", "-n", ns, restored.Name, "-c", "holder", "--", "/holder", "touch",
		"/tmp/exit"); err != nil {
		t.Fatalf("failed to create the exit file: %v: %s", err, out)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		p, err := getPod(t, ns, restored.Name)
		if err == nil && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount > 0 &&
			p.Status.ContainerStatuses[0].State.Running != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the holder did not restart after it exited: %+v", p.Status.ContainerStatuses)
		}
		time.Sleep(time.Second)
	}
	time.Sleep(2 * time.Second)
	counts := holderCounts(t, ns, restored.Name, false)
	if len(counts) == 0 || counts[0] != 0 {
		t.Errorf("restarted holder's counts begin %v, want 0: it restored the checkpoint again", counts)
	}
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Second)
	}
}

// TestFrozenContainerRejected pauses the holder's container in the
// runtime, as someone other than lpm might, and checks that the migration
// is rejected with ContainerFrozen before the cut and the container runs
// on once it is thawed.
func TestFrozenContainerRejected(t *testing.T) {
	requireLPM(t)
	ns := newNamespace(t)
	pod := createPod(t, holderPod(ns, "holder-frozen", nil, nil))
	id := strings.TrimPrefix(pod.Status.ContainerStatuses[0].ContainerID, "containerd://")
	n := labNode(t, nodeA)
	if out, err := n.Output(testContext(t, time.Minute), "ctr", "-n", "k8s.io", "tasks", "pause", id); err != nil {
		t.Fatalf("failed to pause container %s: %v: %s", id, err, out)
	}
	t.Cleanup(func() {
		_, _ = n.Output(testContext(t, time.Minute), "ctr", "-n", "k8s.io", "tasks", "resume", id)
	})

	pm := migrate(t, ns, "move-frozen", lpmv1.PodMigrationSpec{PodName: pod.Name, TargetNode: nodeB})

	requireFailed(t, pm, lpmv1.ReasonContainerFrozen)
	if out, err := n.Output(testContext(t, time.Minute), "ctr", "-n", "k8s.io", "tasks", "resume", id); err != nil {
		t.Fatalf("failed to resume container %s: %v: %s", id, err, out)
	}
	before := lastCount(t, ns, pod.Name)
	time.Sleep(3 * time.Second)
	if after := lastCount(t, ns, pod.Name); after <= before {
		t.Errorf("count is %d after the thaw, was %d: the source does not run", after, before)
	}
	if left := archives(t, nodeA, ns); len(left) > 0 {
		t.Errorf("checkpoint archives left on %s: %v", nodeA, left)
	}
}

// TestHolderWithOwnPidfdMigrates moves a holder that holds a pidfd of its
// own process: CRIU 4.2 restores such a pidfd, so the scan lets it pass and
// the holder continues on the target.
func TestHolderWithOwnPidfdMigrates(t *testing.T) {
	requireLPM(t)
	ns := newNamespace(t)
	pod := createPod(t, holderPod(ns, "holder-pidfd", map[string]string{"HOLDER_PIDFD": "true"}, nil))
	time.Sleep(3 * time.Second)

	requireHolderMoves(t, ns, pod.Name, "move-pidfd")
}

// requireHolderMoves migrates a holder pod to node-b, checks that the
// restored holder counts on past its count from before the migration, and
// returns the migration.
func requireHolderMoves(t *testing.T, ns, podName, migration string) *lpmv1.PodMigration {
	t.Helper()
	before := lastCount(t, ns, podName)

	pm := migrate(t, ns, migration, lpmv1.PodMigrationSpec{PodName: podName, TargetNode: nodeB})

	requireSucceeded(t, pm)
	restored, err := clients.WaitPodReady(withContext(t), ns, pm.Status.RestoredPod, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if after := lastCount(t, ns, restored.Name); after <= before {
		t.Errorf("restored count is %d, not past %d from before the migration", after, before)
	}
	return pm
}

// TestRestoreFailureReportsCRIUErrors makes the restore fail inside CRIU:
// the holder keeps a configMap file open that is mounted with subPath, and
// the configMap changes before the migration. The running pod keeps the
// old file, the restored pod gets the new one, and CRIU rejects the file
// whose size differs from the dump's. The migration must fail with CRIU's
// error lines and the kept log's location in its message, and the source
// must run on.
// containerd 2.3 deletes the restore log with the failed container, so the
// target node's CRIU configuration sets log-file for the test, as the
// agent's documentation advises.
func TestRestoreFailureReportsCRIUErrors(t *testing.T) {
	requireLPM(t)
	n := labNode(t, nodeB)
	// The node's own options (tcp-close, skip-in-flight) stay; log-file is
	// added for the test and the file restored afterwards.
	original, err := n.Output(testContext(t, time.Minute), "cat", "/etc/criu/runc.conf")
	if err != nil {
		t.Fatalf("failed to read the CRIU configuration of %s: %v", nodeB, err)
	}
	if out, err := n.Output(testContext(t, time.Minute), "sh", "-c",
		"echo 'log-file /var/log/criu-lpm-e2e.log' >>/etc/criu/runc.conf"); err != nil {
		t.Fatalf("failed to write the CRIU configuration of %s: %v: %s", nodeB, err, out)
	}
	t.Cleanup(func() {
		restore := n.Command(testContext(t, time.Minute), "sh", "-c", "cat >/etc/criu/runc.conf")
		restore.Stdin = strings.NewReader(string(original))
		_ = restore.Run()
		_, _ = n.Output(testContext(t, time.Minute), "rm", "-f", "/var/log/criu-lpm-e2e.log")
	})
	ns := newNamespace(t)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cfg"},
		Data: map[string]string{"conf": "short\n"}}
	if err := clients.Client.Create(withContext(t), cm); err != nil {
		t.Fatal(err)
	}
	pod := createPod(t, holderPod(ns, "holder-open", map[string]string{"HOLDER_READ": "/etc/conf"},
		func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "cfg", VolumeSource: corev1.VolumeSource{
				ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{
					Name: "cfg"}}}})
			c := &p.Spec.Containers[0]
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "cfg", MountPath: "/etc/conf",
				SubPath: "conf"})
		}))
	time.Sleep(2 * time.Second)
	cm.Data["conf"] = "a longer configuration than the one the holder opened\n"
	if err := clients.Client.Update(withContext(t), cm); err != nil {
		t.Fatal(err)
	}

	pm := migrate(t, ns, "move-open", lpmv1.PodMigrationSpec{PodName: pod.Name, TargetNode: nodeB})

	if pm.Status.Phase != lpmv1.PhaseFailed {
		t.Fatalf("migration ended in %s, want Failed: %s", pm.Status.Phase, outcome(pm))
	}
	msg := outcome(pm)
	t.Logf("failed: %s", msg)
	if !strings.Contains(msg, "CRIU errors:") || !strings.Contains(msg, "CRIU log kept on node") {
		t.Errorf("failure message %q lacks CRIU's error lines or the kept log's location", msg)
	}
	if pm.Status.Target == nil || pm.Status.Target.LogPath == "" {
		t.Errorf("status.target.logPath is empty; want the directory of the kept CRIU restore log")
	}
	before := lastCount(t, ns, pod.Name)
	time.Sleep(3 * time.Second)
	if after := lastCount(t, ns, pod.Name); after <= before {
		t.Errorf("source count is %d after the rollback, was %d: the source does not run", after, before)
	}
	if left := checkpointImages(t, nodeB, ns); len(left) > 0 {
		t.Errorf("checkpoint images left on %s: %v", nodeB, left)
	}
	source, err := getPod(t, ns, pod.Name)
	if err != nil {
		t.Fatal(err)
	}
	if locks := criuNetworkLocks(t, source); len(locks) > 0 {
		t.Errorf("source pod's network namespace holds CRIU's network lock after the rollback: %v", locks)
	}
}

// withPodInfo mounts a downwardAPI volume with the pod's name at
// /etc/podinfo/name.
func withPodInfo(p *corev1.Pod) {
	p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "podinfo", VolumeSource: corev1.VolumeSource{
		DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{{Path: "name",
			FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}}})
	c := &p.Spec.Containers[0]
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "podinfo", MountPath: "/etc/podinfo",
		ReadOnly: true})
}

// TestDevShmFileLeftReported moves a holder that wrote a file to the pod
// sandbox's /dev/shm and closed it: the pod moves, and the source's
// Prepared message reports that the file stays behind.
func TestDevShmFileLeftReported(t *testing.T) {
	requireLPM(t)
	ns := newNamespace(t)
	pod := createPod(t, holderPod(ns, "holder-left", map[string]string{"HOLDER_LEAVE": "/dev/shm/left"}, nil))
	time.Sleep(2 * time.Second)

	pm := requireHolderMoves(t, ns, pod.Name, "move-left")

	var prepared *metav1.Condition
	if pm.Status.Source != nil {
		prepared = meta.FindStatusCondition(pm.Status.Source.Conditions, lpmv1.AgentConditionPrepared)
	}
	want := "its /dev/shm holds 1 file (15 bytes) that stay behind"
	if prepared == nil || !strings.Contains(prepared.Message, want) {
		t.Errorf("source Prepared condition = %+v, want its message to contain %q", prepared, want)
	}
}

// TestDevShmVolumeMigrates moves a holder that keeps a file open in
// /dev/shm on a memory-backed emptyDir volume. The volume's contents
// travel, so the restore reopens the file and the count continues.
func TestDevShmVolumeMigrates(t *testing.T) {
	requireLPM(t)
	ns := newNamespace(t)
	pod := createPod(t, holderPod(ns, "holder-shm", map[string]string{"HOLDER_OPEN": "/dev/shm/held"},
		func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "shm", VolumeSource: corev1.VolumeSource{
				EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}})
			c := &p.Spec.Containers[0]
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "shm", MountPath: "/dev/shm"})
		}))
	time.Sleep(2 * time.Second)

	requireHolderMoves(t, ns, pod.Name, "move-shm")
}
