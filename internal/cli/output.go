package cli

import (
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/printers"
)

// printObject writes obj to w as JSON or YAML, with its apiVersion and kind
// set from the scheme.
func printObject(w io.Writer, format string, obj runtime.Object) error {
	var printer printers.ResourcePrinter
	switch format {
	case outputJSON:
		printer = &printers.JSONPrinter{}
	case outputYAML:
		printer = &printers.YAMLPrinter{}
	default:
		return fmt.Errorf("unsupported output format %q", format)
	}
	if err := printers.NewTypeSetter(scheme).ToPrinter(printer).PrintObj(obj, w); err != nil {
		return fmt.Errorf("failed to print %s: %w", obj.GetObjectKind().GroupVersionKind().Kind, err)
	}
	return nil
}
