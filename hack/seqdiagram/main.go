// Command seqdiagram renders a sequence diagram from its text source into
// SVG. make generate runs it on docs/architecture/flow.txt, the flow of a
// migration, and make verify fails when the committed picture is stale.
// parse describes the source format.
//
// Usage: go run ./hack/seqdiagram SOURCE OUTPUT.svg
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: seqdiagram SOURCE OUTPUT.svg")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(source, output string) error {
	f, err := os.Open(source)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	d, err := parse(f)
	if err != nil {
		return fmt.Errorf("%s: %w", source, err)
	}
	if err := os.WriteFile(output, render(d), 0o644); err != nil {
		return fmt.Errorf("failed to write %s: %w", output, err)
	}
	return nil
}
