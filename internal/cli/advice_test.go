package cli

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// reasonsInAPI parses api/v1 and returns the value of every constant of type
// Reason, so that a reason added to the API without advice fails the test.
func reasonsInAPI(t *testing.T) map[string]lpmv1.Reason {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "api", "v1", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("failed to find the api/v1 sources: %v", err)
	}

	reasons := map[string]lpmv1.Reason{}
	fset := token.NewFileSet()
	for _, path := range files {
		file, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatalf("failed to parse %s: %v", path, err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			spec, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			typ, ok := spec.Type.(*ast.Ident)
			if !ok || typ.Name != "Reason" {
				return true
			}
			for i, name := range spec.Names {
				lit, ok := spec.Values[i].(*ast.BasicLit)
				if !ok {
					t.Fatalf("constant %s is not a string literal", name.Name)
				}
				value, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatalf("failed to unquote %s: %v", lit.Value, err)
				}
				reasons[name.Name] = lpmv1.Reason(value)
			}
			return true
		})
	}
	return reasons
}

func TestAdviceCoversEveryReason(t *testing.T) {
	reasons := reasonsInAPI(t)
	if len(reasons) < 60 {
		t.Fatalf("found %d Reason constants in api/v1, expected the full list", len(reasons))
	}
	for name, reason := range reasons {
		if advice := adviceByReason[reason]; advice == "" {
			t.Errorf("no advice for %s (%q)", name, reason)
		}
	}
}

func TestAdviceHasNoUnknownReason(t *testing.T) {
	known := map[lpmv1.Reason]bool{}
	for _, reason := range reasonsInAPI(t) {
		known[reason] = true
	}
	for reason := range adviceByReason {
		if !known[reason] {
			t.Errorf("advice for %q, which api/v1 does not define", reason)
		}
	}
}

func TestAdviceForUnknownReason(t *testing.T) {
	pm := &lpmv1.PodMigration{ObjectMeta: metav1.ObjectMeta{Name: "web-x7k2p", Namespace: "shop"}}
	got := adviceFor("SomethingNew", pm)
	want := "Read the message above, and the details with kubectl migrate status web-x7k2p -n shop."
	if got != want {
		t.Errorf("adviceFor(SomethingNew) = %q, want %q", got, want)
	}
}

func TestAdviceNamesTheMigration(t *testing.T) {
	pm := &lpmv1.PodMigration{ObjectMeta: metav1.ObjectMeta{Name: "web-x7k2p", Namespace: "shop"}}
	tests := []struct {
		name   string
		reason lpmv1.Reason
		pm     *lpmv1.PodMigration
		want   string
	}{
		{name: "checkpoint log", reason: lpmv1.ReasonCheckpointFailed, pm: pm,
			want: "kubectl migrate status web-x7k2p -n shop shows its path."},
		{name: "deadline", reason: lpmv1.ReasonDeadlineExceeded, pm: pm,
			want: "kubectl migrate status web-x7k2p -n shop, and raise the timeout."},
		{name: "no migration", reason: lpmv1.ReasonInProgress, want: "The migration runs."},
		{name: "no migration keeps the rest", reason: lpmv1.ReasonCheckpointFailed,
			want: "CRIU failed to dump a container."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := adviceFor(tc.reason, tc.pm)
			if !strings.Contains(got, tc.want) {
				t.Errorf("adviceFor(%s) = %q, want it to contain %q", tc.reason, got, tc.want)
			}
		})
	}
}

var placeholderName = regexp.MustCompile(`\bNAME\b`)

// TestAdviceHasNoPlaceholderName checks that no advice contains a placeholder
// for the migration's name, which the plugin fills in.
func TestAdviceHasNoPlaceholderName(t *testing.T) {
	pm := &lpmv1.PodMigration{ObjectMeta: metav1.ObjectMeta{Name: "web-x7k2p", Namespace: "shop"}}
	for reason := range adviceByReason {
		for _, subject := range []*lpmv1.PodMigration{pm, nil} {
			advice := adviceFor(reason, subject)
			if placeholderName.MatchString(advice) || strings.Contains(advice, migrationArgs) {
				t.Errorf("advice for %s = %q, want the migration's name in place of a placeholder", reason, advice)
			}
		}
	}
}
