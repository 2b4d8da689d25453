// Package docs_test checks the documentation against the code: every
// failure reason has a troubleshooting row, every metric is described,
// every condition type is named for kubectl wait, and every relative link
// resolves.
package docs_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// repoRoot is the repository's root, relative to this package.
const repoRoot = "../.."

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, path))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// constants returns the values of the string constants of typeName (or of
// every untyped string constant whose name starts with prefix when typeName
// is empty) in the Go file at path.
func constants(t *testing.T, path, typeName, prefix string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(repoRoot, path), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var values []string
	for _, decl := range f.Decls {
		gen, ok := decl.(*ast.GenDecl)
		if !ok || gen.Tok != token.CONST {
			continue
		}
		for _, spec := range gen.Specs {
			vs := spec.(*ast.ValueSpec)
			ident, _ := vs.Type.(*ast.Ident)
			typed := ident != nil && ident.Name == typeName
			for i, name := range vs.Names {
				if i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				if (typeName != "" && typed) || (typeName == "" && vs.Type == nil && strings.HasPrefix(name.Name, prefix)) {
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					values = append(values, v)
				}
			}
		}
	}
	if len(values) == 0 {
		t.Fatalf("found no constants of type %q or prefix %q in %s: update the test", typeName, prefix, path)
	}
	return values
}

// tableKeys returns the first cells of the Markdown table rows of page
// that hold a single code span, such as "| `PodGone` | ...".
func tableKeys(page string) []string {
	row := regexp.MustCompile("(?m)^\\| `([A-Za-z0-9]+)` \\|")
	var keys []string
	for _, m := range row.FindAllStringSubmatch(page, -1) {
		keys = append(keys, m[1])
	}
	return keys
}

func TestTroubleshootingCoversEveryReason(t *testing.T) {
	reasons := constants(t, "api/v1/conditions.go", "Reason", "")
	rows := tableKeys(readFile(t, "docs/troubleshooting.md"))

	for _, r := range reasons {
		if !slices.Contains(rows, r) {
			t.Errorf("docs/troubleshooting.md has no row for reason %s: add its cause and fix", r)
		}
	}
	for _, r := range rows {
		if !slices.Contains(reasons, r) {
			t.Errorf("docs/troubleshooting.md has a row for %s, which api/v1/conditions.go does not define", r)
		}
	}
}

func TestTroubleshootingRowsOnce(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range tableKeys(readFile(t, "docs/troubleshooting.md")) {
		if seen[r] {
			t.Errorf("docs/troubleshooting.md has two rows for %s", r)
		}
		seen[r] = true
	}
}

// metricName matches the names the metrics code registers: the Name of
// prometheus options and the first argument of prometheus.NewDesc.
var metricName = regexp.MustCompile(`(?:Name:\s*|NewDesc\(\s*)"(lpm_[a-z_]+)"`)

func TestObservabilityListsEveryMetric(t *testing.T) {
	var registered []string
	for _, path := range []string{"internal/controller/metrics.go", "internal/agent/metrics.go"} {
		for _, m := range metricName.FindAllStringSubmatch(readFile(t, path), -1) {
			registered = append(registered, m[1])
		}
	}
	if len(registered) < 10 {
		t.Fatalf("found only %d metric names in the metrics code: update the test", len(registered))
	}
	page := readFile(t, "docs/observability.md")

	for _, name := range registered {
		if !strings.Contains(page, "`"+name+"`") {
			t.Errorf("docs/observability.md does not describe metric %s", name)
		}
	}
	named := regexp.MustCompile(`lpm_[a-z_]+`).FindAllString(page, -1)
	for _, name := range named {
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if trimmed, ok := strings.CutSuffix(name, suffix); ok && slices.Contains(registered, trimmed) {
				base = trimmed
			}
		}
		if !slices.Contains(registered, base) {
			t.Errorf("docs/observability.md names metric %s, which neither the controller nor the agent registers",
				name)
		}
	}
}

func TestObservabilityNamesEveryCondition(t *testing.T) {
	conditions := constants(t, "api/v1/conditions.go", "", "Condition")
	page := readFile(t, "docs/observability.md")

	for _, c := range conditions {
		if !strings.Contains(page, "`"+c+"`") {
			t.Errorf("docs/observability.md does not name condition %s", c)
		}
	}
}

func TestRelativeLinksResolve(t *testing.T) {
	pages, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	pages = append(pages, filepath.Join(repoRoot, "README.md"))
	link := regexp.MustCompile(`\]\(([^)#\s]+)(#[^)\s]*)?\)`)
	// Code blocks and spans hold patterns that look like links.
	code := regexp.MustCompile("(?s)```.*?```|`[^`\n]*`")
	for _, page := range pages {
		data, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		text := code.ReplaceAllString(string(data), "")
		for _, m := range link.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.Contains(target, "://") {
				continue
			}
			path := filepath.Join(filepath.Dir(page), target)
			if _, err := os.Stat(path); err != nil {
				rel, _ := filepath.Rel(repoRoot, page)
				t.Errorf("%s links to %s, which does not exist", rel, target)
			}
		}
	}
}
