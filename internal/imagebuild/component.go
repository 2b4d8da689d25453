package imagebuild

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Component is one of lpm's programs that ships as an image: a static Go
// binary at /<Name>, which is also the entrypoint.
type Component struct {
	// Name is the binary's name, for example "lpm-controller".
	Name string
	// Package is the Go package of the binary, relative to the module's
	// root.
	Package string
	// User is the image's user as UID:GID, empty for root.
	User string
	// Companions are further static binaries the image carries, each at
	// /<Name>.
	Companions []Component
}

// The images of lpm's controller and node agent.
var (
	// Controller runs as a non-root user: it only talks to the API server.
	// The UID is numeric, so the kubelet can enforce runAsNonRoot.
	Controller = Component{Name: "lpm-controller", Package: "./cmd/lpm-controller", User: "65532:65532"}
	// Agent runs as root: it pauses and thaws containers through
	// containerd, runs CRIU and runc from containerd's root, enters
	// containerd's mount namespace and reads the kubelet's checkpoint
	// archives, which only root may read. It carries the copier that it
	// puts into volume data images.
	Agent = Component{Name: "lpm-agent", Package: "./cmd/lpm-agent", Companions: []Component{VolumeRestore}}
	// VolumeRestore is the copier that restores emptyDir volumes in a
	// restored pod; it ships inside the agent's image.
	VolumeRestore = Component{Name: "lpm-volume-restore", Package: "./cmd/lpm-volume-restore"}
)

// Components lists lpm's images.
var Components = []Component{Controller, Agent}

// GoBuild compiles the Go package pkg of the module in moduleDir into the
// file out, for linux/amd64, without cgo. The build is reproducible: the
// same sources and Go toolchain give the same bytes, because -trimpath
// drops the build machine's paths and -buildvcs=false the repository's
// state. version is linked into main.version, where a program defines it.
func GoBuild(ctx context.Context, moduleDir, pkg, out, version string) error {
	ldflags := "-s -w"
	if version != "" {
		ldflags += " -X main.version=" + version
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags="+ldflags,
		"-o", out, pkg)
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=-mod=readonly")
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("failed to build %s: %w: %s", pkg, err, strings.TrimSpace(string(output)))
	}
	return nil
}

// BuildComponent compiles c from the module in moduleDir and returns its
// image, tagged ref. The image has one layer with the binary and its
// companions, no shell,
// and the Unix epoch as every time, so two builds of the same sources have
// the same digest.
func BuildComponent(ctx context.Context, moduleDir string, c Component, ref, version string) (Image, error) {
	dir, err := os.MkdirTemp("", "lpm-image-")
	if err != nil {
		return Image{}, err
	}
	defer func() { _ = os.RemoveAll(dir) }()

	var files []File
	for _, b := range append([]Component{c}, c.Companions...) {
		bin := filepath.Join(dir, b.Name)
		if err := GoBuild(ctx, moduleDir, b.Package, bin, version); err != nil {
			return Image{}, err
		}
		files = append(files, File{Path: "/" + b.Name, Source: bin})
	}
	labels := map[string]string{"org.opencontainers.image.title": c.Name}
	if version != "" {
		labels["org.opencontainers.image.version"] = version
	}
	return Build(Spec{
		Ref:        ref,
		Files:      files,
		Entrypoint: []string{"/" + c.Name},
		Env:        []string{"PATH=/"},
		User:       c.User,
		Labels:     labels,
	})
}
