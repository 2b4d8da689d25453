//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/imagebuild"
	"github.com/lpm-dev/lpm/lab/node"
	"github.com/lpm-dev/lpm/lab/workload"
)

// TestMigrateCarriesBaseImage moves a counter whose image only node-a
// holds: it was imported there under a name no registry serves, so node-b
// can neither find nor pull it. The target agent carries the image from
// the source agent before the cut, and the counter continues on node-b.
func TestMigrateCarriesBaseImage(t *testing.T) {
	skipKnownGap(t)
	requireLPM(t)
	ns := newNamespace(t)
	ref, id := importOnlyOn(t, nodeA, "localhost/lpm-e2e/only-on-a:"+ns, ns)

	pod := workload.CounterPod(ns, "only-a", nodeA)
	pod.Spec.Containers[0].Image = ref
	pod.Spec.Containers[0].ImagePullPolicy = corev1.PullIfNotPresent
	pod = createPod(t, pod)
	time.Sleep(4 * time.Second)
	before := requireCounting(t, pod.Status.PodIP)
	if got := pod.Status.ContainerStatuses[0].ImageID; got != id {
		t.Fatalf("source container's image ID = %q, want the bare image ID %s", got, id)
	}

	pm := migrate(t, ns, "to-b", lpmv1.PodMigrationSpec{PodName: "only-a", TargetNode: nodeB})
	restored := requireMoved(t, ns, "only-a", pm, nodeB, before)
	if pm.Status.Target == nil || pm.Status.Target.BaseImageBytes <= 0 {
		t.Errorf("status.target.baseImageBytes = %v, want the carried layer bytes", pm.Status.Target)
	} else {
		t.Logf("carried %d bytes of base image layers", pm.Status.Target.BaseImageBytes)
	}
	prepared := meta.FindStatusCondition(pm.Status.Target.Conditions, lpmv1.AgentConditionPrepared)
	if prepared == nil || !strings.Contains(prepared.Message, "carried "+id+" from node "+nodeA) {
		t.Errorf("target Prepared = %+v, want a message that names the carried image", prepared)
	}
	if got := restored.Status.ContainerStatuses[0].ImageID; got != id {
		t.Errorf("restored container's image ID = %q, want %s", got, id)
	}
}

// importOnlyOn builds a counter image with a file unique to the test,
// imports it into one node's containerd under ref and returns ref and the
// image ID. The image is removed from every node when the test ends.
func importOnlyOn(t *testing.T, nodeName, ref, unique string) (string, string) {
	t.Helper()
	dir := filepath.Join(theLab.Instance().ImagesDir(), "e2e-"+unique)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	bin := filepath.Join(dir, "counter")
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", bin,
		"./test/apps/counter")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("failed to build the counter: %v\n%s", err, out)
	}
	img, err := imagebuild.Build(imagebuild.Spec{Ref: ref, Entrypoint: []string{"/counter"}, Env: []string{"PATH=/"},
		Files: []imagebuild.File{{Path: "/counter", Source: bin},
			{Path: "/only-on", Data: []byte(nodeName + " " + unique + "\n")}}})
	if err != nil {
		t.Fatal(err)
	}
	id, err := img.ID()
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "image.tar")
	if err := imagebuild.WriteArchive(archive, img); err != nil {
		t.Fatal(err)
	}

	ctx := withContext(t)
	if err := labNode(t, nodeName).ImportImage(ctx, archive); err != nil {
		t.Fatalf("failed to import %s on %s: %v", ref, nodeName, err)
	}
	t.Cleanup(func() {
		for _, n := range []string{nodeA, nodeB} {
			_, _ = labNode(t, n).Output(withContext(t), "ctr", "--address", node.ContainerdSocketPath, "-n",
				"k8s.io", "images", "rm", ref, id)
		}
	})
	return ref, id
}
