package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/lpm-dev/lpm/lab/cluster"
	"github.com/lpm-dev/lpm/lab/images"
)

// configDir is the kustomization users apply to install lpm.
const configDir = "config/default"

// Install installs lpm into the lab the way a user does, from a
// kustomization (config/default unless dir is set), as a real Deployment
// and DaemonSet with their RBAC. Only the images change: the controller
// and agent images built by the lab, which are already on every node.
func Install(ctx context.Context, opts Options, l *cluster.Lab, dir string) error {
	if dir == "" {
		dir = filepath.Join(opts.RepoDir, configDir)
	}
	if _, err := os.Stat(filepath.Join(dir, "kustomization.yaml")); err != nil {
		return fmt.Errorf("cannot install lpm: %s/kustomization.yaml not found: %w", dir, err)
	}
	for _, r := range []string{images.ControllerRef, images.AgentRef} {
		archive := filepath.Join(l.Instance().ImagesDir(), imageName(r)+".tar")
		if _, err := os.Stat(archive); err != nil {
			return fmt.Errorf("cannot install lpm: image %s was not built (is cmd/%s there?): %w", r, imageName(r), err)
		}
	}

	var rendered bytes.Buffer
	kustomize := Kubectl(ctx, l, "kustomize", dir)
	kustomize.Stdout = &rendered
	kustomize.Stderr = os.Stderr
	if err := kustomize.Run(); err != nil {
		return fmt.Errorf("failed to render %s: %w", dir, err)
	}
	manifests, workloads, err := labManifests(&rendered)
	if err != nil {
		return err
	}

	apply := Kubectl(ctx, l, "apply", "--server-side", "--force-conflicts", "-f", "-")
	apply.Stdin = bytes.NewReader(manifests)
	apply.Stdout, apply.Stderr = os.Stdout, os.Stderr
	if err := apply.Run(); err != nil {
		return fmt.Errorf("failed to apply %s: %w", dir, err)
	}
	for _, w := range workloads {
		logf("waiting for %s/%s to roll out", w.namespace, w.ref)
		status := Kubectl(ctx, l, "rollout", "status", "--timeout=180s", "-n", w.namespace, w.ref)
		status.Stdout, status.Stderr = os.Stdout, os.Stderr
		if err := status.Run(); err != nil {
			return fmt.Errorf("%s/%s did not roll out: %w", w.namespace, w.ref, err)
		}
	}
	return waitAgentsReady(ctx, l, 2*time.Minute)
}

type rollout struct {
	namespace string
	ref       string
}

func imageName(ref string) string {
	switch ref {
	case images.ControllerRef:
		return "lpm-controller"
	case images.AgentRef:
		return "lpm-agent"
	}
	return ref
}

// labManifests points the Deployments and DaemonSets of rendered
// manifests at the lab's images and returns the manifests as a stream of
// JSON documents, with the workloads to wait for.
func labManifests(r io.Reader) ([]byte, []rollout, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	var out bytes.Buffer
	var workloads []rollout
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, nil, fmt.Errorf("failed to parse the rendered manifests: %w", err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		kind := obj.GetKind()
		if kind == "Deployment" || kind == "DaemonSet" {
			if err := setLabImages(obj); err != nil {
				return nil, nil, err
			}
			workloads = append(workloads, rollout{namespace: obj.GetNamespace(),
				ref: strings.ToLower(kind) + "/" + obj.GetName()})
		}
		data, err := json.Marshal(obj.Object)
		if err != nil {
			return nil, nil, err
		}
		out.Write(data)
		out.WriteByte('\n')
	}
	return out.Bytes(), workloads, nil
}

// setLabImages replaces the image of each lpm container: a container
// whose image names the agent gets the lab's agent image, any other lpm
// image the controller image.
func setLabImages(obj *unstructured.Unstructured) error {
	for _, field := range []string{"containers", "initContainers"} {
		path := []string{"spec", "template", "spec", field}
		containers, found, err := unstructured.NestedSlice(obj.Object, path...)
		if err != nil || !found {
			continue
		}
		for i, c := range containers {
			m, ok := c.(map[string]any)
			if !ok {
				continue
			}
			image, _ := m["image"].(string)
			switch {
			case strings.Contains(image, "agent"):
				m["image"] = images.AgentRef
			case strings.Contains(image, "lpm") || strings.Contains(image, "controller"):
				m["image"] = images.ControllerRef
			default:
				continue
			}
			m["imagePullPolicy"] = "IfNotPresent"
			containers[i] = m
		}
		if err := unstructured.SetNestedSlice(obj.Object, containers, path...); err != nil {
			return err
		}
	}
	return nil
}
