package main

import (
	"os"
	"strings"
	"testing"
)

const testCRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.dev
spec:
  group: example.dev
  names:
    kind: Widget
    plural: widgets
    shortNames: [wd]
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
    additionalPrinterColumns:
    - name: Phase
      type: string
      jsonPath: .status.phase
    schema:
      openAPIV3Schema:
        description: |-
          Widget is a test kind.

          It has two paragraphs.
        properties:
          apiVersion:
            type: string
          kind:
            type: string
          metadata:
            type: object
          spec:
            description: spec is the wish.
            x-kubernetes-validations:
            - rule: self == oldSelf
              message: spec is immutable
            required: [size]
            properties:
              size:
                description: |-
                  size is the size,
                  in widgets.
                type: integer
                format: int32
                minimum: 1
                maximum: 9
              mode:
                type: string
                enum: [Fast, Slow]
                default: Fast
              pattern:
                type: string
                pattern: ^(a|b)$
                maxLength: 3
              labels:
                type: object
                additionalProperties:
                  type: string
              first:
                type: object
                properties:
                  name:
                    type: string
              second:
                type: object
                properties:
                  name:
                    type: string
              items:
                type: array
                maxItems: 4
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  properties:
                    name:
                      type: string
                    count:
                      type: integer
            type: object
        type: object
`

func TestRender(t *testing.T) {
	c, err := parseCRD([]byte(testCRD))
	if err != nil {
		t.Fatal(err)
	}
	page := string(render([]*crd{c}))

	for _, want := range []string{
		"| [Widget](#widget) | `example.dev/v1` | Namespaced | `wd` | `status` |",
		"Widget is a test kind.\n\nIt has two paragraphs.",
		"| Phase | string | `.status.phase` |",
		"- Rule: spec is immutable (`self == oldSelf`)",
		"| `size` | integer (int32) | size is the size, in widgets. Required. Range: 1 to 9. |",
		"| `mode` | string | Default: `Fast`. One of `Fast`, `Slow`. |",
		"| `pattern` | string | Pattern: `^(a\\|b)$`. Length: at most 3. |",
		"| `labels` | map[string]string |  |",
		"| `first` | [object](#widget-spec-first) |  |",
		"| `second` | [object](#widget-spec-first) |  |",
		"| `items` | [[]object](#widget-spec-items) | Items: at most 4. A list with one entry per `name`. |",
		"<a id=\"widget-spec-items\"></a>\n\n### `.spec.items[]`",
		"`apiVersion`, `kind`, `metadata` are the standard fields",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "widget-spec-second") {
		t.Errorf("page has a section for spec.second, whose schema equals spec.first's")
	}
}

func TestParseCRDRejectsOtherKinds(t *testing.T) {
	for _, data := range []string{
		"apiVersion: v1\nkind: ConfigMap\n",
		"kind: CustomResourceDefinition\nspec:\n  names:\n    kind: X\n",
		"kind: CustomResourceDefinition\nspec:\n  names:\n    kind: X\n  versions:\n  - name: v1\n",
	} {
		if _, err := parseCRD([]byte(data)); err == nil {
			t.Errorf("parseCRD accepted %q", data)
		}
	}
}

// TestPageIsCurrent fails when docs/api.md is not what make generate
// writes from the CRDs.
func TestPageIsCurrent(t *testing.T) {
	want, err := generate("../../config/crd/bases")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("docs/api.md is stale: run make generate")
	}
}
