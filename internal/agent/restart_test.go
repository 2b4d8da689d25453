package agent_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/agent/internal/testenv"
	"github.com/lpm-dev/lpm/internal/agent/transfer"
)

// TestRestartAfterMigrationStartsFresh moves a counter, lets the migration
// succeed, and then starts its container again from the image reference
// the restored pod uses, as the kubelet does when a container exits: the
// new container must start from its original image (the counter's first
// count, 1), not restore the checkpoint again (a count past the cut).
func TestRestartAfterMigrationStartsFresh(t *testing.T) {
	w := newWorld(t)
	a, b := w.addNode("node-a", nodeOptions{}), w.addNode("node-b", nodeOptions{})
	src := w.runCounter(a, "fresh", nil)

	m := w.migrate(src, b, nil)
	assertContinued(t, m.restoredPod.LogDir+"/counter.log", m.frozenAt["counter"])
	cur := w.get(m.pm)
	ckptRef := cur.Status.Target.Containers[0].Image
	baseID := cur.Status.Source.Containers[0].BaseImageID
	if baseID == "" {
		t.Fatalf("source container status = %+v, want the base image's ID", cur.Status.Source.Containers[0])
	}
	w.waitFor("the checkpoint image to point at the base image", func() bool {
		img, err := b.rt.CRIImageStatus(w.ctx, ckptRef)
		return err == nil && img != nil && img.GetId() == baseID
	})

	id, err := testenv.CreateAndStart(w.ctx, b.rt.CRI(), m.restoredPod, "counter-again", ckptRef)
	if err != nil {
		t.Fatalf("failed to start a container from %s after the migration: %v", ckptRef, err)
	}
	restored, err := b.rt.ContainerRestored(w.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if restored {
		t.Errorf("container started from %s after the migration was restored from the checkpoint again", ckptRef)
	}
	logPath := m.restoredPod.LogDir + "/counter-again.log"
	testenv.WaitForCount(t, logPath, 2, 60*time.Second)
	if counts := testenv.Counts(t, logPath); counts[0] != 1 {
		t.Errorf("restarted container's first count = %d, want 1 (a fresh start); the count was %d at the cut",
			counts[0], m.frozenAt["counter"])
	}
	if c := w.waitCondition(m.pm, "target", lpmv1.AgentConditionRestored); c.Status != "True" {
		t.Errorf("target Restored = %s, want True", c.Status)
	}
	w.finish(src, b, m)
}

// TestSourceAgentRestartKeepsCertificate restarts the source agent after it
// served the images and before the target fetched them: the target pins
// the fingerprint published before the restart, so the agent must present
// the same certificate again. A corrupt certificate file is replaced at the
// next start, and the new fingerprint is published.
func TestSourceAgentRestartKeepsCertificate(t *testing.T) {
	w := newWorld(t)
	a, b := w.addNode("node-a", nodeOptions{}), w.addNode("node-b", nodeOptions{})
	src := w.runCounter(a, "certrestart", nil)
	pm := w.checkpointAndServe(src, b, nil)
	before := publishedFingerprint(t, w, a.name)

	w.stopAgent(a)
	// The heartbeat has whole seconds: any the stopped agent wrote is before
	// the next full second.
	time.Sleep(1100 * time.Millisecond)
	restarted := time.Now().Truncate(time.Second)
	w.startAgent(a)
	w.waitFor("the restarted agent to publish a heartbeat", func() bool {
		return heartbeatSince(t, w, a.name, restarted)
	})
	if after := publishedFingerprint(t, w, a.name); after != before {
		t.Errorf("fingerprint after the restart = %s, want the one before, %s", after, before)
	}
	w.setPhase(pm, lpmv1.PhasePreparingImages)
	requireTrue(t, w.waitCondition(pm, "target", lpmv1.AgentConditionImagesReady), "target ImagesReady")
	w.rollBack(pm, src)

	path := filepath.Join(a.stateDir, transfer.IdentityFile)
	w.stopAgent(a)
	if err := os.WriteFile(path, []byte("corrupt"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.startAgent(a)
	w.waitFor("the agent to publish a new fingerprint", func() bool {
		return publishedFingerprint(t, w, a.name) != before
	})
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := info.Mode().Perm(); mode != 0o600 {
		t.Errorf("certificate file mode = %s, want 0600", mode)
	}
	saved, err := transfer.LoadIdentity(a.stateDir, a.name, time.Now())
	if err != nil {
		t.Fatalf("certificate file after the replacement: %v", err)
	}
	if published := publishedFingerprint(t, w, a.name); saved.Fingerprint != published {
		t.Errorf("saved fingerprint = %s, want the published %s", saved.Fingerprint, published)
	}
	w.waitNoLeftovers(a, b)
}

func publishedFingerprint(t *testing.T, w *world, node string) string {
	t.Helper()
	na := &lpmv1.NodeAgent{}
	if err := w.c.Get(w.ctx, types.NamespacedName{Name: node}, na); err != nil {
		t.Fatal(err)
	}
	return na.Status.ServingCertificateSHA256
}

// heartbeatSince reports whether the node's NodeAgent has a heartbeat at or
// after since.
func heartbeatSince(t *testing.T, w *world, node string, since time.Time) bool {
	t.Helper()
	na := &lpmv1.NodeAgent{}
	if err := w.c.Get(w.ctx, types.NamespacedName{Name: node}, na); err != nil {
		t.Fatal(err)
	}
	hb := na.Status.HeartbeatTime
	return hb != nil && !hb.Time.Before(since)
}
