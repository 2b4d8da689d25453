package manifests

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

const configMaps = `
apiVersion: v1
kind: ConfigMap
metadata:
  name: a
  namespace: lpm-system
  labels:
    app.kubernetes.io/part-of: lpm
data:
  key: value
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: b
  namespace: lpm-system
`

func mustParse(t *testing.T, data string) []*unstructured.Unstructured {
	t.Helper()
	objects, err := Parse([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	return objects
}

func TestParseSkipsEmptyDocuments(t *testing.T) {
	objects := mustParse(t, "---\n"+configMaps+"---\n---\n")

	var keys []string
	for _, o := range objects {
		keys = append(keys, Key(o))
	}
	want := []string{"v1/ConfigMap lpm-system/a", "v1/ConfigMap lpm-system/b"}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("keys mismatch (-want +got):\n%s", diff)
	}
}

func TestParseRejectsObjectWithoutName(t *testing.T) {
	if _, err := Parse([]byte("apiVersion: v1\nkind: ConfigMap\n")); err == nil {
		t.Errorf("Parse accepted an object without a name")
	}
}

func TestCompare(t *testing.T) {
	testCases := []struct {
		name string
		// chart is the chart's side; config/ is always configMaps.
		chart     string
		wantDiffs []string
	}{
		{
			name:  "same objects",
			chart: configMaps,
		},
		{
			name: "helm labels ignored",
			chart: strings.Replace(configMaps, "    app.kubernetes.io/part-of: lpm\n",
				"    app.kubernetes.io/part-of: lpm\n    helm.sh/chart: lpm-0.1.0\n"+
					"    app.kubernetes.io/managed-by: Helm\n", 1) +
				"  labels:\n    app.kubernetes.io/instance: lpm\n",
		},
		{
			name:      "changed field",
			chart:     strings.Replace(configMaps, "key: value", "key: other", 1),
			wantDiffs: []string{"v1/ConfigMap lpm-system/a differs"},
		},
		{
			name:      "other label",
			chart:     strings.Replace(configMaps, "part-of: lpm", "part-of: other", 1),
			wantDiffs: []string{"v1/ConfigMap lpm-system/a differs"},
		},
		{
			name:      "object missing from the chart",
			chart:     strings.SplitN(configMaps, "---", 2)[0],
			wantDiffs: []string{"v1/ConfigMap lpm-system/b: in config/ but not in the chart"},
		},
		{
			name:      "object only in the chart",
			chart:     configMaps + "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n",
			wantDiffs: []string{"v1/ConfigMap c: in the chart but not in config/"},
		},
		{
			name:  "other namespace",
			chart: strings.ReplaceAll(configMaps, "lpm-system", "elsewhere"),
			wantDiffs: []string{"elsewhere/a: in the chart", "elsewhere/b: in the chart",
				"lpm-system/a: in config/", "lpm-system/b: in config/"},
		},
		{
			name:  "object twice",
			chart: configMaps + "---\n" + configMaps,
			wantDiffs: []string{"lpm-system/a: more than once in the chart",
				"lpm-system/b: more than once in the chart"},
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			diffs := Compare(mustParse(t, configMaps), mustParse(t, tc.chart))

			if len(diffs) != len(tc.wantDiffs) {
				t.Fatalf("got %d differences, want %d:\n%s", len(diffs), len(tc.wantDiffs), strings.Join(diffs, "\n"))
			}
			for i, want := range tc.wantDiffs {
				if !strings.Contains(diffs[i], want) {
					t.Errorf("difference %d = %q, want it to contain %q", i, diffs[i], want)
				}
			}
		})
	}
}

func TestCompareKeepsInputs(t *testing.T) {
	chart := mustParse(t, strings.Replace(configMaps, "  labels:\n", "  labels:\n    helm.sh/chart: lpm-0.1.0\n", 1))

	Compare(mustParse(t, configMaps), chart)

	if _, ok := chart[0].GetLabels()["helm.sh/chart"]; !ok {
		t.Errorf("Compare removed a label from its input")
	}
}
