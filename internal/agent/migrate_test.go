package agent_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/agent"
	"github.com/lpm-dev/lpm/internal/agent/internal/noderoot"
	"github.com/lpm-dev/lpm/internal/agent/internal/testenv"
	"github.com/lpm-dev/lpm/internal/agent/kubelet"
	"github.com/lpm-dev/lpm/internal/agent/runtime"
	"github.com/lpm-dev/lpm/internal/agent/transfer"
)

// migration is the outcome of a migration driven through its phases.
type migration struct {
	pm          *lpmv1.PodMigration
	restoredPod *testenv.Pod
	restoredIDs map[string]string
	// frozenAt is each container's last count before the cut.
	frozenAt map[string]int
}

// checkpointAndServe drives a migration from Pending to ImagesServed.
func (w *world) checkpointAndServe(src *sourcePod, target *agentNode,
	mutate func(*lpmv1.PodMigration)) *lpmv1.PodMigration {
	t := w.t
	t.Helper()
	pm := w.newMigration(src, target.name, mutate)
	requireTrue(t, w.waitCondition(pm, "source", lpmv1.AgentConditionPrepared), "source Prepared")
	requireTrue(t, w.waitCondition(pm, "target", lpmv1.AgentConditionPrepared), "target Prepared")

	w.setPhase(pm, lpmv1.PhaseCheckpointing)
	requireTrue(t, w.waitCondition(pm, "source", lpmv1.AgentConditionCheckpointed), "source Checkpointed")
	requireTrue(t, w.waitCondition(pm, "source", lpmv1.AgentConditionImagesServed), "source ImagesServed")
	return pm
}

// migrate drives a migration through every phase, checking the agents'
// reports on the way, and leaves it Succeeded.
func (w *world) migrate(src *sourcePod, target *agentNode, mutate func(*lpmv1.PodMigration)) *migration {
	t := w.t
	t.Helper()
	m := w.restoreAndVerify(src, target, mutate)
	w.setRestoredCondition(m.pm)
	w.checkKilledFrozen(src, m)
	w.deleteSourcePod(src)
	requireTrue(t, w.waitCondition(m.pm, "source", lpmv1.AgentConditionCleanedUp), "source CleanedUp")
	assertNotFrozen(t, w.get(m.pm), "after the killed source was thawed")
	w.checkSourceDead(src, m)
	w.setPhase(m.pm, lpmv1.PhaseSucceeded)
	return m
}

// assertNotFrozen checks that the source agent no longer reports the
// source frozen.
func assertNotFrozen(t *testing.T, pm *lpmv1.PodMigration, when string) {
	t.Helper()
	if pm.Status.Source != nil && pm.Status.Source.Frozen {
		t.Errorf("status.source.frozen = true %s, want false", when)
	}
}

// restoreAndVerify drives a migration to a restored pod that the target
// agent reports restored, checking the agents' reports on the way.
func (w *world) restoreAndVerify(src *sourcePod, target *agentNode, mutate func(*lpmv1.PodMigration)) *migration {
	t := w.t
	t.Helper()
	pm := w.checkpointAndServe(src, target, mutate)

	cur := w.get(pm)
	s := cur.Status.Source
	if s.CutTime == nil || len(s.Containers) != len(src.ids) {
		t.Fatalf("source status = %+v, want a cut time and %d containers", s, len(src.ids))
	}
	for _, c := range s.Containers {
		if c.ArchiveBytes == 0 || c.PagesWritten == 0 || c.FrozenTime == nil || c.ImageDigest == "" ||
			c.ImageBytes <= c.ArchiveBytes || c.BaseImage == "" {
			t.Errorf("source container status = %+v, want archive size, dump statistics, base image and image", c)
		}
	}
	frozenAt := map[string]int{}
	for name, id := range src.ids {
		if !s.Frozen || taskState(t, w.ctx, src.node, id) != runtime.TaskPaused {
			t.Errorf("source frozen = %v, container %s task %s; want a paused source", s.Frozen, name,
				taskState(t, w.ctx, src.node, id))
		}
		counts := testenv.Counts(t, src.logs[name])
		frozenAt[name] = counts[len(counts)-1]
	}

	w.setPhase(pm, lpmv1.PhasePreparingImages)
	requireTrue(t, w.waitCondition(pm, "target", lpmv1.AgentConditionImagesReady), "target ImagesReady")
	cur = w.get(pm)
	if tg := cur.Status.Target; tg.BytesTotal == 0 || tg.BytesDone != tg.BytesTotal ||
		len(tg.Containers) != len(src.ids) {
		t.Errorf("target status = %+v, want all bytes done and %d images", tg, len(src.ids))
	}
	for _, c := range cur.Status.Target.Containers {
		if img, err := target.rt.CRIImageStatus(w.ctx, c.Image); err != nil || img == nil {
			t.Errorf("CRI ImageStatus(%s) = %v, %v; want the image", c.Image, img, err)
		}
	}

	// The API server keeps whole seconds of the kubelet's Ready time.
	readyFrom := time.Now().Truncate(time.Second)
	restoredPod, restoredIDs := w.restore(pm, target)
	requireTrue(t, w.waitCondition(pm, "target", lpmv1.AgentConditionRestored), "target Restored")
	cur = w.get(pm)
	if rt := cur.Status.Target.ReadyTime; rt == nil || rt.Time.Before(readyFrom) || rt.After(time.Now()) {
		t.Errorf("target readyTime = %v, want the time the pod became Ready, after %s", rt, readyFrom)
	}
	for _, tc := range cur.Status.Target.Containers {
		if !tc.Restored || tc.ContainerID != restoredIDs[tc.Name] {
			t.Errorf("target container = %+v, want restored container %s", tc, restoredIDs[tc.Name])
		}
	}

	return &migration{pm: pm, restoredPod: restoredPod, restoredIDs: restoredIDs, frozenAt: frozenAt}
}

// checkKilledFrozen waits until the source agent reports Killed after
// verification and checks that the source stays frozen: with SIGKILL
// pending it neither runs nor exits, so the kubelet, which sees a running
// container, has nothing to restart, and the agent cleans up only after
// the source pod is deleted.
func (w *world) checkKilledFrozen(src *sourcePod, m *migration) {
	t := w.t
	t.Helper()
	requireTrue(t, w.waitCondition(m.pm, "source", lpmv1.AgentConditionKilled), "source Killed")
	time.Sleep(time.Second)
	for name, id := range src.ids {
		if st := taskState(t, w.ctx, src.node, id); st != runtime.TaskPaused {
			t.Errorf("source task of %s after Killed = %s, want paused", name, st)
		}
		if st := criContainerState(t, w, src.node, id); st.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("CRI state of source container %s after Killed = %s, want running", name, st.GetState())
		}
		assertNoCountAfter(t, src.logs[name], m.frozenAt[name])
	}
	cur := w.get(m.pm)
	if c := apimeta.FindStatusCondition(cur.Status.Source.Conditions, lpmv1.AgentConditionCleanedUp); c != nil {
		t.Errorf("source CleanedUp = %+v before the source pod was deleted", c)
	}
	// The killed containers stay paused until the source pod is deleted.
	if !cur.Status.Source.Frozen {
		t.Error("status.source.frozen = false after Killed, want true while the killed source stays paused")
	}
}

// checkSourceDead checks that the killed source died when the agent thawed
// it, without running again: SIGKILL ended it and its log has no count past
// the cut.
func (w *world) checkSourceDead(src *sourcePod, m *migration) {
	t := w.t
	t.Helper()
	for name, id := range src.ids {
		if st := taskState(t, w.ctx, src.node, id); st != runtime.TaskStopped && st != runtime.TaskUnknown {
			t.Errorf("source task of %s after CleanedUp = %s, want stopped", name, st)
		}
		var status *runtimeapi.ContainerStatus
		w.waitFor("the CRI to report source container "+name+" exited", func() bool {
			status = criContainerState(t, w, src.node, id)
			return status.GetState() == runtimeapi.ContainerState_CONTAINER_EXITED
		})
		if status.GetExitCode() != 137 {
			t.Errorf("source container %s exited with %d (%s), want 137: SIGKILL", name, status.GetExitCode(),
				status.GetReason())
		}
		assertNoCountAfter(t, src.logs[name], m.frozenAt[name])
	}
}

// deleteSourcePod deletes the source pod with a grace period, as the
// controller does: the pod stays, terminating, until the test removes it
// as the kubelet would.
func (w *world) deleteSourcePod(src *sourcePod) {
	if err := w.c.Delete(w.ctx, src.pod, client.GracePeriodSeconds(30)); err != nil {
		w.t.Fatalf("failed to delete source pod %s: %v", src.pod.Name, err)
	}
}

// assertNoCountAfter checks that a counter's log ends at count frozenAt.
func assertNoCountAfter(t *testing.T, logPath string, frozenAt int) {
	t.Helper()
	counts := testenv.Counts(t, logPath)
	if len(counts) == 0 || counts[len(counts)-1] != frozenAt {
		t.Errorf("log %s ends at count %v, want %d: the source ran after the cut", logPath,
			counts[max(0, len(counts)-3):], frozenAt)
	}
}

func criContainerState(t *testing.T, w *world, n *agentNode, id string) *runtimeapi.ContainerStatus {
	t.Helper()
	resp, err := n.rt.CRI().ContainerStatus(w.ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("ContainerStatus(%s) error = %v", id, err)
	}
	return resp.GetStatus()
}

// finish removes the source and restored pods, as the controller and the
// user would, and checks that the agents leave nothing behind.
func (w *world) finish(src *sourcePod, target *agentNode, m *migration) {
	w.removePod(src.node, src.pod.Name, src.cri)
	w.removePod(target, m.restoredPod.Config.Metadata.Name, m.restoredPod)
	if err := w.c.Delete(w.ctx, m.pm); err != nil {
		w.t.Fatal(err)
	}
	w.waitNoLeftovers(src.node, target)
}

func assertContinued(t *testing.T, logPath string, frozenAt int) {
	t.Helper()
	testenv.WaitForCount(t, logPath, frozenAt+5, 60*time.Second)
	counts := testenv.Counts(t, logPath)
	for i := 1; i < len(counts); i++ {
		if counts[i] <= counts[i-1] {
			t.Fatalf("count went from %d to %d after the restore: the process started over", counts[i-1], counts[i])
		}
	}
}

// TestMigrateDirect moves a counter between two nodes with the direct
// transfer: the target agent fetches the image from the source agent over
// mutually authenticated TLS, and the counter continues.
func TestMigrateDirect(t *testing.T) {
	w := newWorld(t)
	a, b := w.addNode("node-a", nodeOptions{}), w.addNode("node-b", nodeOptions{})
	src := w.runCounter(a, "web", nil)

	pm := w.checkpointAndServe(src, b, nil)
	w.checkRejectedPeers(pm, a)
	w.setPhase(pm, lpmv1.PhaseFailed)
	requireTrue(t, w.waitCondition(pm, "source", lpmv1.AgentConditionCleanedUp), "source CleanedUp after rollback")
	requireTrue(t, w.waitCondition(pm, "target", lpmv1.AgentConditionCleanedUp), "target CleanedUp after rollback")
	if st := taskState(t, w.ctx, a, src.id); st != runtime.TaskRunning {
		t.Fatalf("source task after rollback = %s, want running", st)
	}
	before := testenv.Counts(t, src.logPath)
	testenv.WaitForCount(t, src.logPath, before[len(before)-1]+3, 30*time.Second)
	if err := w.c.Delete(w.ctx, pm); err != nil {
		t.Fatal(err)
	}
	w.waitNoLeftovers(a, b)

	m := w.migrate(src, b, func(pm *lpmv1.PodMigration) { pm.Name = "move-web-again" })
	assertContinued(t, m.restoredPod.LogDir+"/counter.log", m.frozenAt["counter"])
	w.finish(src, b, m)
}

// checkRejectedPeers fetches a served image as peers that must not get
// it: a token for another audience, and the agent of a third node with a
// valid token and published certificate.
func (w *world) checkRejectedPeers(pm *lpmv1.PodMigration, source *agentNode) {
	t := w.t
	cur := w.get(pm)
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex,
		Digest: digest.Digest(cur.Status.Source.Containers[0].ImageDigest), Size: -1}
	na := &lpmv1.NodeAgent{}
	if err := w.c.Get(w.ctx, client.ObjectKey{Name: source.name}, na); err != nil {
		t.Fatal(err)
	}

	w.createNode("node-c")
	third, err := transfer.NewIdentity("node-c", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	thirdAgent := &lpmv1.NodeAgent{ObjectMeta: metav1.ObjectMeta{Name: "node-c"}}
	if err := w.c.Create(w.ctx, thirdAgent); err != nil {
		t.Fatal(err)
	}
	thirdAgent.Status.ServingCertificateSHA256 = third.Fingerprint
	if err := w.c.Status().Update(w.ctx, thirdAgent); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "lpm-agent-node-c", Namespace: agentNamespace},
		Spec: corev1.PodSpec{NodeName: "node-c", ServiceAccountName: agentAccount,
			Containers: []corev1.Container{{Name: "agent", Image: "lpm-agent"}}}}
	if err := w.c.Create(w.ctx, pod); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name       string
		token      string
		wantStatus int
	}{
		{name: "token of another audience", token: w.boundToken(pod, "https://kubernetes.default.svc"),
			wantStatus: http.StatusUnauthorized},
		{name: "agent of a node that is not the target", token: w.boundToken(pod, audience),
			wantStatus: http.StatusForbidden},
	}
	for _, tc := range cases {
		tokenFile := t.TempDir() + "/token"
		if err := os.WriteFile(tokenFile, []byte(tc.token), 0o600); err != nil {
			t.Fatal(err)
		}
		src := transfer.NewClient(third, tokenFile, clocktesting.NewFakePassiveClock(time.Now())).
			Source(source.endpoint, na.Status.ServingCertificateSHA256, string(pm.UID), "counter")
		rc, err := src.Open(w.ctx, desc, 0)
		if err == nil {
			_, _ = io.Copy(io.Discard, rc)
			_ = rc.Close()
		}
		var statusErr *transfer.StatusError
		if !errors.As(err, &statusErr) || statusErr.Code != tc.wantStatus {
			t.Errorf("%s: fetch error = %v, want status %d", tc.name, err, tc.wantStatus)
		}
	}
}

// TestMigrateRegistry moves a counter through a registry on loopback that
// requires credentials: the source agent pushes with the PodMigration's
// pull secret, and the target node's runtime pulls with it.
func TestMigrateRegistry(t *testing.T) {
	w := newWorld(t)
	a, b := w.addNode("node-a", nodeOptions{}), w.addNode("node-b", nodeOptions{})
	src := w.runCounter(a, "web", nil)
	auth := base64.StdEncoding.EncodeToString([]byte(testenv.RegistryUser + ":" + testenv.RegistryPassword))
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "checkpoints-pull", Namespace: "default"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"` + w.reg.Host +
			`":{"auth":"` + auth + `"}}}`)},
	}
	if err := w.c.Create(w.ctx, secret); err != nil {
		t.Fatal(err)
	}

	m := w.migrate(src, b, func(pm *lpmv1.PodMigration) {
		pm.Spec.Transfer = &lpmv1.Transfer{Mode: lpmv1.TransferModeRegistry,
			Registry: &lpmv1.RegistryTransfer{Repository: w.reg.Host + "/private/checkpoints",
				PullSecretName: secret.Name}}
	})
	cur := w.get(m.pm)
	if img := cur.Status.Target.Containers[0].Image; img != cur.Status.Source.Containers[0].Image {
		t.Errorf("target image = %s, want the pushed digest reference %s", img, cur.Status.Source.Containers[0].Image)
	}
	assertContinued(t, m.restoredPod.LogDir+"/counter.log", m.frozenAt["counter"])
	w.finish(src, b, m)
}

// TestMigrateTwoContainers moves a pod of two containers. Both are frozen
// before either is checkpointed, so neither counts on past the cut, and
// both continue from their own checkpoint on the target.
func TestMigrateTwoContainers(t *testing.T) {
	w := newWorld(t)
	a, b := w.addNode("node-a", nodeOptions{}), w.addNode("node-b", nodeOptions{})
	src := w.runPod(a, "pair", w.images.Counter, []string{"first", "second"}, nil)

	m := w.migrate(src, b, nil)

	for name, frozenAt := range m.frozenAt {
		// The source's log ends at the cut: nothing counted after it.
		counts := testenv.Counts(t, src.logs[name])
		if last := counts[len(counts)-1]; last != frozenAt {
			t.Errorf("container %s counted from %d to %d after the cut", name, frozenAt, last)
		}
		assertContinued(t, m.restoredPod.LogDir+"/"+name+".log", frozenAt)
	}
	w.finish(src, b, m)
}

// TestMigrateTwoHops moves a counter from node-a to node-b and back. The
// second hop checkpoints a container that containerd restored, whose OCI
// spec names it "containerd" (containerd 2.3.7), so the archive check must
// rely on config.dump.
func TestMigrateTwoHops(t *testing.T) {
	w := newWorld(t)
	a, b := w.addNode("node-a", nodeOptions{}), w.addNode("node-b", nodeOptions{})
	src := w.runCounter(a, "hop", nil)

	first := w.migrate(src, b, nil)
	assertContinued(t, first.restoredPod.LogDir+"/counter.log", first.frozenAt["counter"])
	w.removePod(a, src.pod.Name, src.cri)

	hop := w.restoredSource(b, first)
	second := w.migrate(hop, a, nil)
	if second.frozenAt["counter"] <= first.frozenAt["counter"] {
		t.Errorf("second hop froze the counter at %d, not past the first cut at %d", second.frozenAt["counter"],
			first.frozenAt["counter"])
	}
	assertContinued(t, second.restoredPod.LogDir+"/counter.log", second.frozenAt["counter"])
	w.finish(hop, a, second)
	if err := w.c.Delete(w.ctx, first.pm); err != nil {
		t.Fatal(err)
	}
	w.waitNoLeftovers(a, b)
}

// restoredSource returns the pod that a migration restored on node n as
// the source of the next migration.
func (w *world) restoredSource(n *agentNode, m *migration) *sourcePod {
	w.t.Helper()
	pod := &corev1.Pod{}
	key := client.ObjectKey{Namespace: "default", Name: m.restoredPod.Config.Metadata.Name}
	if err := w.c.Get(w.ctx, key, pod); err != nil {
		w.t.Fatal(err)
	}
	src := &sourcePod{pod: pod, cri: m.restoredPod, node: n, ids: m.restoredIDs, logs: map[string]string{}}
	for name := range m.restoredIDs {
		src.logs[name] = filepath.Join(m.restoredPod.LogDir, name+".log")
	}
	src.id, src.logPath = m.restoredIDs["counter"], src.logs["counter"]
	return src
}

// TestMigrationFailures runs migrations that must fail with a clear reason,
// leave the source running as it was and leave nothing on either node.
func TestMigrationFailures(t *testing.T) {
	w := newWorld(t)
	a, b := w.addNode("node-a", nodeOptions{}), w.addNode("node-b", nodeOptions{})

	// Each subtest runs the world's steps under its own testing.T.
	parent := w.t
	t.Cleanup(func() { w.t = parent })

	t.Run("altered archive", func(t *testing.T) {
		w.t = t
		src := w.runCounter(a, "altered", nil)
		// The target's agent starts only after the archive was altered, so it
		// cannot fetch the image before.
		pm := w.newMigration(src, "node-late", nil)
		requireTrue(t, w.waitCondition(pm, "source", lpmv1.AgentConditionPrepared), "source Prepared")
		w.setPhase(pm, lpmv1.PhaseCheckpointing)
		requireTrue(t, w.waitCondition(pm, "source", lpmv1.AgentConditionImagesServed), "source ImagesServed")
		rec := w.get(pm)
		// Corrupt the served archive on the source's disk, after its digest
		// was computed: the stream no longer matches the image.
		path := a.ckptDir + "/" + archiveName(t, a)
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte("altered"), rec.Status.Source.Containers[0].ArchiveBytes/2); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()

		late := w.addNode("node-late", nodeOptions{})
		w.setPhase(pm, lpmv1.PhasePreparingImages)
		requireFalse(t, w.waitCondition(pm, "target", lpmv1.AgentConditionImagesReady), "target ImagesReady",
			lpmv1.ReasonDigestMismatch)
		w.rollBack(pm, src)
		w.waitNoLeftovers(late)
	})

	t.Run("kubelet down", func(t *testing.T) {
		w.t = t
		ln := closedPort(t)
		down := w.addNode("node-down", nodeOptions{checkpointer: func(n *agentNode) agent.Checkpointer {
			tokenFile := n.tokenFile
			kc, err := kubelet.New(kubelet.Config{Address: "127.0.0.1", Port: ln, InsecureSkipVerify: true,
				TokenFile: tokenFile})
			if err != nil {
				t.Fatal(err)
			}
			return kc
		}})
		src := w.runCounter(down, "nokubelet", nil)
		pm := w.newMigration(src, b.name, nil)
		requireTrue(t, w.waitCondition(pm, "source", lpmv1.AgentConditionPrepared), "source Prepared")
		w.setPhase(pm, lpmv1.PhaseCheckpointing)
		requireFalse(t, w.waitCondition(pm, "source", lpmv1.AgentConditionCheckpointed), "source Checkpointed",
			lpmv1.ReasonKubeletUnavailable)
		w.rollBack(pm, src)
		w.waitNoLeftovers(down)
	})

	t.Run("liveness probe deadline", func(t *testing.T) {
		w.t = t
		src := w.runCounter(a, "probed", func(p *corev1.Pod) {
			p.Spec.Containers[0].LivenessProbe = &corev1.Probe{
				ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz",
					Port: intstr.FromInt32(8080)}},
				PeriodSeconds: 2, TimeoutSeconds: 1, FailureThreshold: 4}
		})
		pm := w.newMigration(src, b.name, nil)
		requireTrue(t, w.waitCondition(pm, "source", lpmv1.AgentConditionPrepared), "source Prepared")
		w.setPhase(pm, lpmv1.PhaseCheckpointing)
		// The budget is (4-1)*2s+1s = 7s and the agent fails 5s before it.
		requireFalse(t, w.waitConditionStatus(pm, "source", lpmv1.AgentConditionImagesServed,
			metav1.ConditionFalse), "source ImagesServed", lpmv1.ReasonLivenessProbeDeadline)
		w.rollBack(pm, src)
	})

	t.Run("disk full during receive", func(t *testing.T) {
		w.t = t
		small := w.addNode("node-small", nodeOptions{node: noderoot.Config{RootSize: 40 << 20}})
		src := w.runCounter(a, "big", nil, "48")
		pm := w.checkpointAndServe(src, small, nil)
		w.setPhase(pm, lpmv1.PhasePreparingImages)
		requireFalse(t, w.waitCondition(pm, "target", lpmv1.AgentConditionImagesReady), "target ImagesReady",
			lpmv1.ReasonNodeDiskFull)
		w.rollBack(pm, src)
		w.waitNoLeftovers(small)
	})

	t.Run("registry rejects the push", func(t *testing.T) {
		w.t = t
		src := w.runCounter(a, "nocreds", nil)
		pm := w.newMigration(src, b.name, func(pm *lpmv1.PodMigration) {
			pm.Spec.Transfer = &lpmv1.Transfer{Mode: lpmv1.TransferModeRegistry,
				Registry: &lpmv1.RegistryTransfer{Repository: w.reg.Host + "/private/checkpoints"}}
		})
		requireTrue(t, w.waitCondition(pm, "source", lpmv1.AgentConditionPrepared), "source Prepared")
		w.setPhase(pm, lpmv1.PhaseCheckpointing)
		requireFalse(t, w.waitConditionStatus(pm, "source", lpmv1.AgentConditionImagesServed,
			metav1.ConditionFalse), "source ImagesServed", lpmv1.ReasonTransferFailed)
		w.rollBack(pm, src)
	})

	t.Run("process of another user", func(t *testing.T) {
		w.t = t
		uid := fmt.Sprintf("nonroot-%d", w.counter.Add(1))
		criPod := testenv.RunPod(w.ctx, t, a.rt.CRI(), a.node.CgroupParent, a.node.LogDir, "nonroot", uid)
		id, err := testenv.CreateAndStartAs(w.ctx, a.rt.CRI(), criPod, "counter", w.images.Counter,
			ptr.To[int64](1000))
		if err != nil {
			t.Fatal(err)
		}
		testenv.WaitForCount(t, filepath.Join(criPod.LogDir, "counter.log"), 1, 30*time.Second)
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "nonroot", Namespace: "default"},
			Spec: corev1.PodSpec{NodeName: a.name, Containers: []corev1.Container{{Name: "counter",
				Image: w.images.Counter}}}}
		if err := w.c.Create(w.ctx, pod); err != nil {
			t.Fatal(err)
		}
		w.setRunning(pod, a, []container{{name: "counter", id: id}}, w.images.Counter)
		src := &sourcePod{pod: pod, cri: criPod, id: id, node: a}
		pm := w.newMigration(src, b.name, nil)

		// containerd runs with the test's capabilities, and root on some
		// virtual machines lacks CAP_SYS_RESOURCE: expect what the agent
		// published for its node.
		na := &lpmv1.NodeAgent{}
		if err := w.c.Get(w.ctx, client.ObjectKey{Name: a.name}, na); err != nil {
			t.Fatal(err)
		}
		c := w.waitCondition(pm, "source", lpmv1.AgentConditionPrepared)
		if na.Status.Capabilities.CheckpointNonRoot {
			requireTrue(t, c, "source Prepared")
		} else {
			requireFalse(t, c, "source Prepared", lpmv1.ReasonNonRootUnsupported)
		}
		w.setPhase(pm, lpmv1.PhaseFailed)
		if err := w.c.Delete(w.ctx, pm); err != nil {
			t.Fatal(err)
		}
		w.removePod(a, pod.Name, criPod)
	})

	t.Run("base image missing on both nodes", func(t *testing.T) {
		w.t = t
		// The source node knows this image by name and ID only, as after
		// loading it from a file: the target cannot pull it. Once it is
		// removed on the source, the target cannot carry it either.
		image := "localhost/lpm-test/imported:v1"
		testenv.ImportCounterImage(w.ctx, t, a.rt, image)
		src := w.runCounterFrom(a, "imported", image, nil)
		if err := a.rt.RemoveImage(w.ctx, image); err != nil {
			t.Fatal(err)
		}
		pm := w.newMigration(src, b.name, nil)
		c := w.waitCondition(pm, "target", lpmv1.AgentConditionPrepared)
		requireFalse(t, c, "target Prepared", lpmv1.ReasonBaseImageUnavailable)
		if !strings.Contains(c.Message, "cannot be pulled") || !strings.Contains(c.Message, "carrying it from node") {
			t.Errorf("target Prepared message = %q, want it to say what was tried", c.Message)
		}
		if st := taskState(t, w.ctx, a, src.id); st != runtime.TaskRunning {
			t.Errorf("source task = %s, want running: the migration must fail before the cut", st)
		}
		w.setPhase(pm, lpmv1.PhaseFailed)
		if err := w.c.Delete(w.ctx, pm); err != nil {
			t.Fatal(err)
		}
		w.removePod(a, src.pod.Name, src.cri)
		if err := a.rt.RemoveImage(w.ctx, image); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("runtime without CRIU", func(t *testing.T) {
		w.t = t
		nocriu := w.addNode("node-nocriu", nodeOptions{node: noderoot.Config{DisableCRIU: true}})
		src := w.runCounter(nocriu, "nocriu", nil)
		pm := w.newMigration(src, b.name, nil)
		requireFalse(t, w.waitCondition(pm, "source", lpmv1.AgentConditionPrepared), "source Prepared",
			lpmv1.ReasonAgentCannotCheckpoint)

		src2 := w.runCounter(a, "tonocriu", nil)
		pm2 := w.newMigration(src2, nocriu.name, nil)
		requireFalse(t, w.waitCondition(pm2, "target", lpmv1.AgentConditionPrepared), "target Prepared",
			lpmv1.ReasonAgentCannotRestore)
		for _, p := range []*lpmv1.PodMigration{pm, pm2} {
			w.setPhase(p, lpmv1.PhaseFailed)
			if err := w.c.Delete(w.ctx, p); err != nil {
				t.Fatal(err)
			}
		}
		w.waitNoLeftovers(nocriu, a)
		w.removePod(nocriu, src.pod.Name, src.cri)
		w.removePod(a, src2.pod.Name, src2.cri)
	})
	w.t = parent
	w.waitNoLeftovers(a, b)
}

// rollBack plays the controller's rollback: phase Failed, then both agents
// clean up and the source runs on from where it was frozen.
func (w *world) rollBack(pm *lpmv1.PodMigration, src *sourcePod) {
	t := w.t
	w.setPhase(pm, lpmv1.PhaseFailed)
	requireTrue(t, w.waitCondition(pm, "source", lpmv1.AgentConditionCleanedUp), "source CleanedUp")
	assertNotFrozen(t, w.get(pm), "after the rollback thawed the source")
	if st := taskState(t, w.ctx, src.node, src.id); st != runtime.TaskRunning {
		t.Errorf("source task after rollback = %s, want running", st)
	}
	counts := testenv.Counts(t, src.logPath)
	testenv.WaitForCount(t, src.logPath, counts[len(counts)-1]+3, 30*time.Second)
	if err := w.c.Delete(w.ctx, pm); err != nil {
		t.Fatal(err)
	}
	w.removePod(src.node, src.pod.Name, src.cri)
	w.waitNoLeftovers(src.node)
}

func archiveName(t *testing.T, n *agentNode) string {
	t.Helper()
	entries, err := os.ReadDir(n.ckptDir)
	if err != nil || len(entries) != 1 {
		t.Fatalf("checkpoint directory holds %v (%v), want one archive", entries, err)
	}
	return entries[0].Name()
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	return port
}

// TestTwentyMigrationsLeaveNoDiskUsage migrates twenty counters in a row
// and checks that both nodes' disk usage returns to where it started.
func TestTwentyMigrationsLeaveNoDiskUsage(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping twenty migrations in short mode")
	}
	w := newWorld(t)
	a, b := w.addNode("node-a", nodeOptions{}), w.addNode("node-b", nodeOptions{})
	run := func(i int) {
		src := w.runCounter(a, "loop-"+strconv.Itoa(i), nil)
		m := w.migrate(src, b, nil)
		w.finish(src, b, m)
	}
	// The first run pulls nothing new but lets containerd's database grow
	// to its working size.
	run(0)
	startA, startB := diskUsage(t, a), diskUsage(t, b)
	filesB := files(t, b.node.Dir+"/containerd")
	for i := 1; i <= 20; i++ {
		run(i)
	}
	endA, endB := diskUsage(t, a), diskUsage(t, b)
	t.Logf("disk usage node-a %d -> %d bytes, node-b %d -> %d bytes", startA, endA, startB, endB)
	// containerd's bolt database keeps its size once grown; everything
	// else must be gone.
	const slack = 1 << 20
	if endA > startA+slack || endB > startB+slack {
		t.Errorf("disk usage grew: node-a %d -> %d, node-b %d -> %d bytes", startA, endA, startB, endB)
		for path, size := range files(t, b.node.Dir+"/containerd") {
			if size > filesB[path] {
				t.Logf("node-b %s: %d -> %d bytes", path, filesB[path], size)
			}
		}
	}
}

// files maps every regular file under dir to its size.
func files(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if info, err := d.Info(); err == nil && info.Mode().IsRegular() {
			out[path] = info.Size()
		}
		return nil
	})
	return out
}

func diskUsage(t *testing.T, n *agentNode) int64 {
	t.Helper()
	var total int64
	for _, dir := range []string{n.node.Dir + "/containerd", n.stateDir, n.ckptDir} {
		total += du(t, dir)
	}
	return total
}

// du sums the sizes of the files under dir.
func du(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if info, err := d.Info(); err == nil && info.Mode().IsRegular() {
			total += info.Size()
		}
		return nil
	})
	return total
}

// TestAgentRestartSettlesVanishedMigration stops the source agent while it
// holds the source frozen and deletes the migration while the agent is
// down. Started again, the agent must thaw the source, and both nodes must
// end up holding nothing of the migration.
func TestAgentRestartSettlesVanishedMigration(t *testing.T) {
	w := newWorld(t)
	a, b := w.addNode("node-a", nodeOptions{}), w.addNode("node-b", nodeOptions{})
	src := w.runCounter(a, "restart", nil)
	pm := w.checkpointAndServe(src, b, nil)
	w.setPhase(pm, lpmv1.PhasePreparingImages)
	requireTrue(t, w.waitCondition(pm, "target", lpmv1.AgentConditionImagesReady), "target ImagesReady")

	w.stopAgent(a)
	if st := taskState(t, w.ctx, a, src.id); st != runtime.TaskPaused {
		t.Fatalf("source task after the agent stopped = %s, want paused", st)
	}
	if err := w.c.Delete(w.ctx, pm); err != nil {
		t.Fatal(err)
	}
	w.startAgent(a)

	w.waitFor("the restarted agent to thaw the source", func() bool {
		return taskState(t, w.ctx, a, src.id) == runtime.TaskRunning
	})
	counts := testenv.Counts(t, src.logPath)
	testenv.WaitForCount(t, src.logPath, counts[len(counts)-1]+3, 30*time.Second)
	w.removePod(a, src.pod.Name, src.cri)
	w.waitNoLeftovers(a, b)
}

// TestAgentRestartAfterKill stops the source agent after it killed the
// frozen source, deletes the source pod while the agent is down and starts
// the agent again: it must thaw the killed source from its state directory,
// so the processes die without running again.
func TestAgentRestartAfterKill(t *testing.T) {
	w := newWorld(t)
	a, b := w.addNode("node-a", nodeOptions{}), w.addNode("node-b", nodeOptions{})
	src := w.runCounter(a, "killed", nil)
	m := w.restoreAndVerify(src, b, nil)
	w.setRestoredCondition(m.pm)
	w.checkKilledFrozen(src, m)

	w.stopAgent(a)
	w.deleteSourcePod(src)
	w.startAgent(a)

	requireTrue(t, w.waitCondition(m.pm, "source", lpmv1.AgentConditionCleanedUp), "source CleanedUp")
	w.checkSourceDead(src, m)
	w.setPhase(m.pm, lpmv1.PhaseSucceeded)
	w.finish(src, b, m)
}
