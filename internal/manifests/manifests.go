// Package manifests renders lpm's install manifests, from the kustomization
// config/default and from the Helm chart charts/lpm, and compares the
// objects of the two. make verify uses it (hack/verify-manifests) to keep
// the chart from drifting away from config/.
package manifests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strings"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// ReferenceNamespace is the namespace config/default installs into.
const ReferenceNamespace = "lpm-system"

// ReferenceValues are the chart values with which the chart renders the
// same objects as config/default: by default the chart leaves the creation
// of its namespace to `helm install --create-namespace`.
var ReferenceValues = []string{"namespace.create=true"}

// HelmLabels are the labels that the chart adds to every object and
// config/ does not. Compare ignores them.
var HelmLabels = []string{
	"helm.sh/chart",
	"app.kubernetes.io/managed-by",
	"app.kubernetes.io/instance",
	"app.kubernetes.io/version",
}

// Tools are the paths of the kustomize and helm binaries.
type Tools struct {
	KustomizePath string
	HelmPath      string
}

// Build renders the kustomization in dir.
func (t Tools) Build(ctx context.Context, dir string) ([]*unstructured.Unstructured, error) {
	out, err := run(ctx, t.KustomizePath, "build", dir)
	if err != nil {
		return nil, err
	}
	return Parse(out)
}

// Template renders chart as release "lpm" in namespace, CRDs included, with
// the values of set ("key=value", as `helm template --set` takes them).
func (t Tools) Template(ctx context.Context, chart, namespace string, set ...string) ([]*unstructured.Unstructured,
	error) {
	args := []string{"template", "lpm", chart, "--namespace", namespace, "--include-crds"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out, err := run(ctx, t.HelmPath, args...)
	if err != nil {
		return nil, err
	}
	return Parse(out)
}

// Lint runs `helm lint --strict` on chart with the values of set.
func (t Tools) Lint(ctx context.Context, chart string, set ...string) error {
	args := []string{"lint", "--strict", chart}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	_, err := run(ctx, t.HelmPath, args...)
	return err
}

func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s failed: %w\n%s%s", name, strings.Join(args, " "), err, stdout.String(),
			stderr.String())
	}
	return stdout.Bytes(), nil
}

// Parse decodes a stream of YAML or JSON documents into objects. Empty
// documents are skipped.
func Parse(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objects []*unstructured.Unstructured
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objects, nil
			}
			return nil, fmt.Errorf("failed to parse manifests: %w", err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		if obj.GetKind() == "" || obj.GetName() == "" {
			return nil, fmt.Errorf("invalid object without kind or name: %v", obj.Object)
		}
		objects = append(objects, obj)
	}
}

// Key identifies an object: API version, kind, namespace and name.
func Key(obj *unstructured.Unstructured) string {
	key := obj.GetAPIVersion() + "/" + obj.GetKind() + " "
	if ns := obj.GetNamespace(); ns != "" {
		key += ns + "/"
	}
	return key + obj.GetName()
}

// Compare returns the differences between the objects of want (rendered
// from config/) and got (rendered from the chart), one line or diff per
// object, sorted by key. It ignores HelmLabels.
func Compare(want, got []*unstructured.Unstructured) []string {
	wantByKey, diffs := index(want, "config/")
	gotByKey, more := index(got, "the chart")
	diffs = append(diffs, more...)

	keys := map[string]bool{}
	for k := range wantByKey {
		keys[k] = true
	}
	for k := range gotByKey {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)

	for _, k := range sorted {
		w, g := wantByKey[k], gotByKey[k]
		switch {
		case g == nil:
			diffs = append(diffs, fmt.Sprintf("%s: in config/ but not in the chart", k))
		case w == nil:
			diffs = append(diffs, fmt.Sprintf("%s: in the chart but not in config/", k))
		default:
			if d := cmp.Diff(w.Object, withoutHelmLabels(g).Object); d != "" {
				diffs = append(diffs, fmt.Sprintf("%s differs (-config/ +chart):\n%s", k, d))
			}
		}
	}
	return diffs
}

// index maps objects by key and reports keys that occur twice.
func index(objects []*unstructured.Unstructured, source string) (map[string]*unstructured.Unstructured, []string) {
	byKey := map[string]*unstructured.Unstructured{}
	var diffs []string
	for _, obj := range objects {
		k := Key(obj)
		if _, ok := byKey[k]; ok {
			diffs = append(diffs, fmt.Sprintf("%s: more than once in %s", k, source))
		}
		byKey[k] = obj
	}
	return byKey, diffs
}

// withoutHelmLabels returns a copy of obj without HelmLabels, and without
// its labels field when no other label is left.
func withoutHelmLabels(obj *unstructured.Unstructured) *unstructured.Unstructured {
	out := obj.DeepCopy()
	labels := out.GetLabels()
	if labels == nil {
		return out
	}
	for _, l := range HelmLabels {
		delete(labels, l)
	}
	if len(labels) == 0 {
		unstructured.RemoveNestedField(out.Object, "metadata", "labels")
		return out
	}
	out.SetLabels(labels)
	return out
}
