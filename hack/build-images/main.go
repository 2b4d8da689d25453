// Command build-images builds the images of lpm's controller and node
// agent from the Go sources, without a container engine, and writes each
// as an archive that `docker load`, `ctr images import` and `crane push`
// read. Two runs on the same sources with the same Go toolchain give the
// same image digests. make image runs it.
//
// Usage: go run ./hack/build-images [-repository localhost/lpm] [-version dev] [-out bin/images]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/lpm-dev/lpm/internal/imagebuild"
)

func main() {
	var repository, version, out string
	flag.StringVar(&repository, "repository", "localhost/lpm",
		"Repository prefix of the images: REPOSITORY/controller:VERSION and REPOSITORY/agent:VERSION.")
	flag.StringVar(&version, "version", "dev", "Image tag, also linked into the binaries as their version.")
	flag.StringVar(&out, "out", "bin/images", "Directory of the image archives.")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	lines, err := build(ctx, repository, version, out)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Print(lines)
}

// build builds every component into out and returns one line per image:
// the archive, the reference and the manifest digest. It writes the same
// lines to out/digests.txt.
func build(ctx context.Context, repository, version, out string) (string, error) {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	var lines strings.Builder
	for _, c := range imagebuild.Components {
		ref := fmt.Sprintf("%s/%s:%s", repository, strings.TrimPrefix(c.Name, "lpm-"), version)
		img, err := imagebuild.BuildComponent(ctx, ".", c, ref, version)
		if err != nil {
			return "", err
		}
		archive := filepath.Join(out, c.Name+".tar")
		if err := imagebuild.WriteArchive(archive, img); err != nil {
			return "", err
		}
		digest, err := img.Image.Digest()
		if err != nil {
			return "", fmt.Errorf("failed to compute the digest of %s: %w", ref, err)
		}
		fmt.Fprintf(&lines, "%s %s %s\n", archive, ref, digest)
	}
	if err := os.WriteFile(filepath.Join(out, "digests.txt"), []byte(lines.String()), 0o644); err != nil {
		return "", err
	}
	return lines.String(), nil
}
