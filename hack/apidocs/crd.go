package main

import (
	"fmt"

	"sigs.k8s.io/yaml"
)

// crd is the part of a CustomResourceDefinition that the reference shows.
type crd struct {
	Kind string `json:"kind"`
	Spec struct {
		Group string `json:"group"`
		Names struct {
			Kind       string   `json:"kind"`
			Plural     string   `json:"plural"`
			ShortNames []string `json:"shortNames"`
			Categories []string `json:"categories"`
		} `json:"names"`
		Scope    string    `json:"scope"`
		Versions []version `json:"versions"`
	} `json:"spec"`
}

type version struct {
	Name    string   `json:"name"`
	Served  bool     `json:"served"`
	Storage bool     `json:"storage"`
	Columns []column `json:"additionalPrinterColumns"`
	Schema  struct {
		OpenAPIV3Schema *schema `json:"openAPIV3Schema"`
	} `json:"schema"`
	Subresources map[string]any `json:"subresources"`
}

type column struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	JSONPath string `json:"jsonPath"`
	Priority int    `json:"priority"`
}

// schema is a structural OpenAPI v3 schema as controller-gen writes it.
type schema struct {
	Description          string             `json:"description"`
	Type                 string             `json:"type"`
	Format               string             `json:"format"`
	Properties           map[string]*schema `json:"properties"`
	Items                *schema            `json:"items"`
	AdditionalProperties *schema            `json:"additionalProperties"`
	Required             []string           `json:"required"`
	Enum                 []any              `json:"enum"`
	Default              any                `json:"default"`
	Pattern              string             `json:"pattern"`
	MinLength            *int64             `json:"minLength"`
	MaxLength            *int64             `json:"maxLength"`
	Minimum              *float64           `json:"minimum"`
	Maximum              *float64           `json:"maximum"`
	MinItems             *int64             `json:"minItems"`
	MaxItems             *int64             `json:"maxItems"`
	MaxProperties        *int64             `json:"maxProperties"`
	IntOrString          bool               `json:"x-kubernetes-int-or-string"`
	ListType             string             `json:"x-kubernetes-list-type"`
	ListMapKeys          []string           `json:"x-kubernetes-list-map-keys"`
	Validations          []validation       `json:"x-kubernetes-validations"`
}

type validation struct {
	Rule    string `json:"rule"`
	Message string `json:"message"`
}

// parseCRD decodes one CustomResourceDefinition from YAML.
func parseCRD(data []byte) (*crd, error) {
	c := &crd{}
	if err := yaml.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("failed to parse the CRD: %w", err)
	}
	if c.Kind != "CustomResourceDefinition" {
		return nil, fmt.Errorf("invalid CRD: kind is %q, want CustomResourceDefinition", c.Kind)
	}
	if c.Spec.Names.Kind == "" || len(c.Spec.Versions) == 0 {
		return nil, fmt.Errorf("invalid CRD: it names no kind or no version")
	}
	for _, v := range c.Spec.Versions {
		if v.Schema.OpenAPIV3Schema == nil {
			return nil, fmt.Errorf("invalid CRD: version %s of %s has no schema", v.Name, c.Spec.Names.Kind)
		}
	}
	return c, nil
}
