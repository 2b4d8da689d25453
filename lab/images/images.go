// Package images builds the lab's container images from the Go sources of
// the repository: the pod sandbox (pause) and the test workloads from
// test/apps, and lpm's controller and agent from cmd/. Each image holds one
// static binary, and each is written as an archive that the lab imports
// into every node's containerd.
package images

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/lpm-dev/lpm/internal/imagebuild"
)

// Image is one image the lab builds.
type Image struct {
	// Name is the archive's file name stem.
	Name string
	// Package is the Go package of the binary, relative to the
	// repository root.
	Package string
	// Ref is the image reference.
	Ref string
	// Optional images are skipped while their package does not exist.
	Optional bool
	// User is the image's default user; empty means root. An image whose
	// pods set runAsNonRoot without runAsUser needs a numeric non-root
	// user here.
	User string
	// Companions are Go packages of further binaries the image carries,
	// each at /<last element of the package>.
	Companions []string
}

// References of the images the lab builds.
const (
	PauseRef      = "localhost/lpm-test/pause:v1"
	CounterRef    = "localhost/lpm-test/counter:v1"
	HolderRef     = "localhost/lpm-test/holder:v1"
	ControllerRef = "localhost/lpm/controller:dev"
	AgentRef      = "localhost/lpm/agent:dev"
)

// All lists the images of the lab.
var All = []Image{
	{Name: "pause", Package: "./test/apps/pause", Ref: PauseRef},
	{Name: "counter", Package: "./test/apps/counter", Ref: CounterRef},
	{Name: "holder", Package: "./test/apps/holder", Ref: HolderRef},
	{Name: "lpm-controller", Package: "./cmd/lpm-controller", Ref: ControllerRef, Optional: true, User: "65532:65532"},
	{Name: "lpm-agent", Package: "./cmd/lpm-agent", Ref: AgentRef, Optional: true,
		Companions: []string{"./cmd/lpm-volume-restore"}},
}

// Result is a built image.
type Result struct {
	Image   Image
	Archive string
	ID      string
}

// Build compiles each image's binary from repoDir and writes its archive
// to outDir. Optional images whose package is missing are skipped.
func Build(ctx context.Context, repoDir, outDir string, imgs []Image) ([]Result, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, err
	}
	binDir, err := os.MkdirTemp("", "lpm-lab-images-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(binDir) }()

	var results []Result
	for _, img := range imgs {
		if _, err := os.Stat(filepath.Join(repoDir, img.Package)); err != nil {
			if img.Optional {
				continue
			}
			return nil, fmt.Errorf("package %s of image %s not found: %w", img.Package, img.Name, err)
		}
		var files []imagebuild.File
		for _, pkg := range append([]string{img.Package}, img.Companions...) {
			name := img.Name
			if pkg != img.Package {
				name = filepath.Base(pkg)
			}
			bin := filepath.Join(binDir, name)
			if err := goBuild(ctx, repoDir, pkg, bin); err != nil {
				return nil, err
			}
			files = append(files, imagebuild.File{Path: "/" + name, Source: bin})
		}
		built, err := imagebuild.Build(imagebuild.Spec{
			Ref:        img.Ref,
			Files:      files,
			Entrypoint: []string{"/" + img.Name},
			Env:        []string{"PATH=/"},
			User:       img.User,
		})
		if err != nil {
			return nil, err
		}
		archive := filepath.Join(outDir, img.Name+".tar")
		if err := imagebuild.WriteArchive(archive, built); err != nil {
			return nil, err
		}
		id, err := built.ID()
		if err != nil {
			return nil, err
		}
		results = append(results, Result{Image: img, Archive: archive, ID: id})
	}
	return results, nil
}

// goBuild compiles the package pkg of repoDir into the static binary out.
func goBuild(ctx context.Context, repoDir, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = repoDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("failed to build %s: %w: %s", pkg, err, strings.TrimSpace(string(output)))
	}
	return nil
}
