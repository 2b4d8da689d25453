package agent_test

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/agent/internal/testenv"
	"github.com/lpm-dev/lpm/internal/agent/transfer"
)

// TestCarryBaseImage moves a counter whose image only the source node
// holds, imported rather than pulled, so no registry serves it. The target
// node holds the image's first layer through another image. The target
// agent carries the image from the source agent before the cut, copying
// only the layer it lacks, and the restored counter continues on it.
func TestCarryBaseImage(t *testing.T) {
	w := newWorld(t)
	a, b := w.addNode("node-a", nodeOptions{}), w.addNode("node-b", nodeOptions{})
	const image = "localhost/lpm-test/carried:v1"
	extra := bytes.Repeat([]byte("a layer only the source node holds\n"), 4096)
	carried := testenv.ImportLayeredCounterImage(w.ctx, t, a.rt, image, "LPM_TEST_CARRIED=1", extra)
	testenv.ImportLayeredCounterImage(w.ctx, t, b.rt, "localhost/lpm-test/shared:v1", "LPM_TEST_SHARED=1", nil)
	if img, err := b.rt.CRIImageStatus(w.ctx, carried.ID); err != nil || img != nil {
		t.Fatalf("CRI ImageStatus(%s) on node-b = %v, %v before the migration; want no image", carried.ID, img, err)
	}

	src := w.runCounterFrom(a, "carried", image, nil)
	if ref := src.pod.Status.ContainerStatuses[0].ImageID; ref != carried.ID {
		t.Fatalf("source container's image ID = %q, want the bare image ID %s", ref, carried.ID)
	}
	pm := w.newMigration(src, b.name, nil)
	prepared := w.waitCondition(pm, "target", lpmv1.AgentConditionPrepared)
	requireTrue(t, prepared, "target Prepared")
	if !strings.Contains(prepared.Message, "carried "+carried.ID+" from node node-a (1 of 2 layers") {
		t.Errorf("target Prepared message = %q, want it to name the carried image and layer", prepared.Message)
	}
	if got := w.get(pm).Status.Target.BaseImageBytes; got != carried.ExtraLayerBytes {
		t.Errorf("target baseImageBytes = %d, want %d: the size of the one layer node-b lacked", got,
			carried.ExtraLayerBytes)
	}
	img, err := b.rt.CRIImageStatus(w.ctx, carried.ID)
	if err != nil || img == nil || img.GetId() != carried.ID {
		t.Fatalf("CRI ImageStatus(%s) on node-b = %v, %v; want image ID %s", carried.ID, img, err, carried.ID)
	}
	w.checkBaseImageRejected(pm, a)
	w.setPhase(pm, lpmv1.PhaseFailed)
	requireTrue(t, w.waitCondition(pm, "target", lpmv1.AgentConditionCleanedUp), "target CleanedUp")
	if err := w.c.Delete(w.ctx, pm); err != nil {
		t.Fatal(err)
	}

	// The carried image stays on node-b like a pulled one: the next
	// migration of the pod finds it and restores onto it.
	m := w.migrate(src, b, func(pm *lpmv1.PodMigration) { pm.Name = "move-carried-again" })
	cur := w.get(m.pm)
	if got := cur.Status.Target.BaseImageBytes; got != 0 {
		t.Errorf("target baseImageBytes = %d on the second migration, want 0: node-b holds the image", got)
	}
	if id := cur.Status.Source.Containers[0].BaseImageID; id != carried.ID {
		t.Errorf("source baseImageID = %q, want %s", id, carried.ID)
	}
	assertContinued(t, m.restoredPod.LogDir+"/counter.log", m.frozenAt["counter"])
	w.finish(src, b, m)
}

// checkBaseImageRejected requests a migration's base image as peers that
// must not get it, and checks that the source agent rejects each request
// with 403.
func (w *world) checkBaseImageRejected(pm *lpmv1.PodMigration, source *agentNode) {
	t := w.t
	t.Helper()
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
	tokenFile := t.TempDir() + "/token"
	if err := os.WriteFile(tokenFile, []byte(w.boundToken(pod, audience)), 0o600); err != nil {
		t.Fatal(err)
	}
	fetcher := transfer.NewClient(third, tokenFile, clocktesting.NewFakePassiveClock(time.Now()))

	cur := w.get(pm)
	for _, tc := range []struct {
		name string
		req  transfer.BaseImageRequest
	}{
		{name: "agent of a node that is not the target", req: transfer.BaseImageRequest{Namespace: cur.Namespace,
			Name: cur.Name, MigrationUID: string(cur.UID), Container: "counter"}},
		{name: "migration that does not exist", req: transfer.BaseImageRequest{Namespace: cur.Namespace,
			Name: "move-nothing", MigrationUID: string(cur.UID), Container: "counter"}},
	} {
		_, _, err := fetcher.BaseImageSource(source.endpoint, na.Status.ServingCertificateSHA256, tc.req).
			Root(w.ctx, "")
		var statusErr *transfer.StatusError
		if !errors.As(err, &statusErr) || statusErr.Code != http.StatusForbidden {
			t.Errorf("%s: base image request error = %v, want status %d", tc.name, err, http.StatusForbidden)
		}
	}
}
