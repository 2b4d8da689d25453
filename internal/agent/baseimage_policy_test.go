package agent

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/agent/transfer"
)

func TestAuthorizeBaseImage(t *testing.T) {
	const imported = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	migration := func(mutate func(*lpmv1.PodMigration)) *lpmv1.PodMigration {
		pm := &lpmv1.PodMigration{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "move-web", UID: "uid-1"},
			Spec:       lpmv1.PodMigrationSpec{PodName: "web"},
			Status: lpmv1.PodMigrationStatus{Phase: lpmv1.PhasePending, SourceNode: "node-a",
				TargetNode: "node-b", SourcePodUID: "pod-1"},
		}
		if mutate != nil {
			mutate(pm)
		}
		return pm
	}
	pod := func(mutate func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web", UID: "pod-1"},
			Spec:       corev1.PodSpec{NodeName: "node-a"},
			Status: corev1.PodStatus{
				InitContainerStatuses: []corev1.ContainerStatus{{Name: "proxy", Image: "proxy:v1",
					ImageID: "registry.example/proxy@sha256:2222222222222222222222222222222222222222222222222222222222222222"}},
				ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: "app:v1", ImageID: imported}},
			},
		}
		if mutate != nil {
			mutate(p)
		}
		return p
	}
	request := transfer.BaseImageRequest{Namespace: "default", Name: "move-web", MigrationUID: "uid-1",
		Container: "app"}

	for _, tc := range []struct {
		name      string
		pm        *lpmv1.PodMigration
		pod       *corev1.Pod
		container string
		peer      string
		wantRef   string
		wantErr   error
	}{
		{name: "app container of an active migration", pm: migration(nil), pod: pod(nil), peer: "node-b",
			wantRef: imported},
		{name: "sidecar container", pm: migration(nil), pod: pod(nil), container: "proxy", peer: "node-b",
			wantRef: "registry.example/proxy@sha256:2222222222222222222222222222222222222222222222222222222222222222"},
		{name: "image without ID", pm: migration(nil), peer: "node-b", wantRef: "app:v1",
			pod: pod(func(p *corev1.Pod) { p.Status.ContainerStatuses[0].ImageID = "" })},
		{name: "running phase", pm: migration(func(pm *lpmv1.PodMigration) {
			pm.Status.Phase = lpmv1.PhaseCheckpointing
		}), pod: pod(nil), peer: "node-b", wantRef: imported},
		{name: "migration missing", pod: pod(nil), peer: "node-b", wantErr: transfer.ErrForbidden},
		{name: "another UID", pm: migration(func(pm *lpmv1.PodMigration) { pm.UID = "uid-2" }), pod: pod(nil),
			peer: "node-b", wantErr: transfer.ErrForbidden},
		{name: "failed migration", pm: migration(func(pm *lpmv1.PodMigration) {
			pm.Status.Phase = lpmv1.PhaseFailed
		}), pod: pod(nil), peer: "node-b", wantErr: transfer.ErrForbidden},
		{name: "succeeded migration", pm: migration(func(pm *lpmv1.PodMigration) {
			pm.Status.Phase = lpmv1.PhaseSucceeded
		}), pod: pod(nil), peer: "node-b", wantErr: transfer.ErrForbidden},
		{name: "deleted migration", pm: migration(func(pm *lpmv1.PodMigration) {
			pm.DeletionTimestamp = &metav1.Time{}
		}), pod: pod(nil), peer: "node-b", wantErr: transfer.ErrForbidden},
		{name: "source is another node", pm: migration(func(pm *lpmv1.PodMigration) {
			pm.Status.SourceNode = "node-c"
		}), pod: pod(nil), peer: "node-b", wantErr: transfer.ErrForbidden},
		{name: "caller is not the target", pm: migration(nil), pod: pod(nil), peer: "node-c",
			wantErr: transfer.ErrForbidden},
		{name: "no target yet", pm: migration(func(pm *lpmv1.PodMigration) { pm.Status.TargetNode = "" }),
			pod: pod(nil), peer: "", wantErr: transfer.ErrForbidden},
		{name: "pod missing", pm: migration(nil), peer: "node-b", wantErr: transfer.ErrForbidden},
		{name: "pod on another node", pm: migration(nil), peer: "node-b", wantErr: transfer.ErrForbidden,
			pod: pod(func(p *corev1.Pod) { p.Spec.NodeName = "node-c" })},
		{name: "pod of another name", pm: migration(nil), peer: "node-b", wantErr: transfer.ErrForbidden,
			pod: pod(func(p *corev1.Pod) { p.Name = "db" })},
		{name: "pod replaced", pm: migration(nil), peer: "node-b", wantErr: transfer.ErrForbidden,
			pod: pod(func(p *corev1.Pod) { p.UID = "pod-2" })},
		{name: "container not in the pod", pm: migration(nil), pod: pod(nil), container: "debug", peer: "node-b",
			wantErr: transfer.ErrForbidden},
		{name: "container without image", pm: migration(nil), peer: "node-b", wantErr: transfer.ErrNotFound,
			pod: pod(func(p *corev1.Pod) {
				p.Status.ContainerStatuses[0].ImageID, p.Status.ContainerStatuses[0].Image = "", ""
			})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := request
			if tc.container != "" {
				req.Container = tc.container
			}
			ref, err := authorizeBaseImage(tc.pm, tc.pod, req, tc.peer, "node-a")
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("authorizeBaseImage() error = %v, want %v", err, tc.wantErr)
			}
			if ref != tc.wantRef {
				t.Errorf("authorizeBaseImage() = %q, want %q", ref, tc.wantRef)
			}
		})
	}
}

func TestBaseImageAnchors(t *testing.T) {
	const (
		id   = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
		root = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	)
	for _, tc := range []struct {
		name     string
		ref      string
		knownID  string
		wantRoot digest.Digest
		wantID   digest.Digest
	}{
		{name: "bare image ID", ref: id, wantID: id},
		{name: "repository digest", ref: "docker.io/library/busybox@" + root, wantRoot: root},
		{name: "repository digest with known ID", ref: "docker.io/library/busybox@" + root, knownID: id,
			wantRoot: root, wantID: id},
		{name: "tag only", ref: "localhost/app:v1"},
		{name: "tag with known ID", ref: "localhost/app:v1", knownID: id, wantID: id},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gotRoot, gotID := baseImageAnchors(tc.ref, tc.knownID)
			if diff := cmp.Diff([]digest.Digest{tc.wantRoot, tc.wantID}, []digest.Digest{gotRoot, gotID}); diff != "" {
				t.Errorf("baseImageAnchors() root and ID mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
