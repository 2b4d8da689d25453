// Command apidocs writes the API reference, docs/api.md, from the CRDs that
// controller-gen generates into config/crd/bases. make generate runs it,
// and make verify fails when the committed page is stale.
//
// Usage: go run ./hack/apidocs [-crds config/crd/bases] [-out docs/api.md]
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

func main() {
	var dir, out string
	flag.StringVar(&dir, "crds", "config/crd/bases", "Directory of the CRD manifests.")
	flag.StringVar(&out, "out", "docs/api.md", "File to write the reference to.")
	flag.Parse()

	page, err := generate(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := os.WriteFile(out, page, 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "failed to write %s: %v\n", out, err)
		os.Exit(1)
	}
}

// generate reads every CRD in dir and returns the reference page.
func generate(dir string) ([]byte, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var crds []*crd
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		c, err := parseCRD(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		crds = append(crds, c)
	}
	if len(crds) == 0 {
		return nil, fmt.Errorf("no CRD found in %s", dir)
	}
	return render(crds), nil
}
