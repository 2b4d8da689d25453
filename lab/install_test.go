package lab

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lpm-dev/lpm/lab/images"
)

func TestLabManifestsUseLabImages(t *testing.T) {
	rendered := `apiVersion: v1
kind: Namespace
metadata:
  name: lpm-system
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: lpm-controller
  namespace: lpm-system
spec:
  template:
    spec:
      containers:
      - name: manager
        image: ghcr.io/lpm-dev/lpm-controller:v0.1.0
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: lpm-agent
  namespace: lpm-system
spec:
  template:
    spec:
      containers:
      - name: agent
        image: ghcr.io/lpm-dev/lpm-agent:v0.1.0
        imagePullPolicy: Always
`
	out, workloads, err := labManifests(strings.NewReader(rendered))
	if err != nil {
		t.Fatal(err)
	}
	wantWorkloads := []rollout{
		{namespace: "lpm-system", ref: "deployment/lpm-controller"},
		{namespace: "lpm-system", ref: "daemonset/lpm-agent"},
	}
	if diff := cmp.Diff(wantWorkloads, workloads, cmp.AllowUnexported(rollout{})); diff != "" {
		t.Errorf("workloads (-want +got):\n%s", diff)
	}

	var gotImages []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var obj struct {
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct {
							Image           string `json:"image"`
							ImagePullPolicy string `json:"imagePullPolicy"`
						} `json:"containers"`
					} `json:"spec"`
				} `json:"template"`
			} `json:"spec"`
		}
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Fatalf("invalid JSON document %q: %v", line, err)
		}
		for _, c := range obj.Spec.Template.Spec.Containers {
			gotImages = append(gotImages, c.Image+" "+c.ImagePullPolicy)
		}
	}
	wantImages := []string{images.ControllerRef + " IfNotPresent", images.AgentRef + " IfNotPresent"}
	if diff := cmp.Diff(wantImages, gotImages); diff != "" {
		t.Errorf("images (-want +got):\n%s", diff)
	}
}
