package agent_test

import (
	"testing"
	"time"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/agent/internal/testenv"
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
