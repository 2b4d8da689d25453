//go:build e2e

package e2e

import (
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/lpm-dev/lpm/lab/node"
)

func clientKey(ns, name string) client.ObjectKey { return client.ObjectKey{Namespace: ns, Name: name} }

// nodeContainerdConfig is the lab's containerd configuration, with restore
// from checkpoint images disabled when asked.
func nodeContainerdConfig(disableRestore bool) node.ContainerdConfig {
	return node.ContainerdConfig{DisableRestore: disableRestore}
}

// appsReplicaSet runs one counter pod owned by a ReplicaSet.
type appsReplicaSet struct {
	ns, name string
	pod      *corev1.Pod
}

// create creates the ReplicaSet and returns the name of its Ready pod.
func (r *appsReplicaSet) create(t *testing.T) string {
	t.Helper()
	labels := map[string]string{"app": r.name}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: r.ns, Name: r.name},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr.To(int32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       r.pod.Spec,
			},
		},
	}
	ctx := withContext(t)
	if err := clients.Client.Create(ctx, rs); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		pods := &corev1.PodList{}
		if err := clients.Client.List(ctx, pods, client.InNamespace(r.ns), client.MatchingLabels(labels)); err == nil {
			for _, p := range pods.Items {
				if podIsReady(&p) {
					return p.Name
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("ReplicaSet %s has no Ready pod", r.name)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
