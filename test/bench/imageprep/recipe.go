package imageprep

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/lpm-dev/lpm/internal/agent/runtime"
	"github.com/lpm-dev/lpm/lab/node"
)

// Stage names of the manual recipe, in order.
const (
	RecipeFrom     = "buildah from"
	RecipeAdd      = "buildah add"
	RecipeConfig   = "buildah config"
	RecipeCommit   = "buildah commit"
	RecipePush     = "buildah push"
	RecipeCopy     = "copy"
	RecipeImport   = "ctr import"
	RecipeVisible  = "CRI visible"
	RecipeTotal    = "total"
	recipeAnnotKey = "io.kubernetes.cri-o.annotations.checkpoint.name"
)

// RecipeStages lists the recipe's stages in order.
var RecipeStages = []string{RecipeFrom, RecipeAdd, RecipeConfig, RecipeCommit, RecipePush, RecipeCopy,
	RecipeImport, RecipeVisible}

// Recipe runs the documented manual recipe with buildah on the host, with
// storage of its own under WorkDir, and imports the result into a node.
type Recipe struct {
	// WorkDir holds buildah's storage and the OCI archive.
	WorkDir string
	// Target is the node to import into, and TargetDir a directory inside
	// it that the archive is copied to.
	Target    *node.Node
	TargetDir string
}

func (r *Recipe) buildah(ctx context.Context, args ...string) (string, error) {
	base := []string{"--root", filepath.Join(r.WorkDir, "storage"), "--runroot", filepath.Join(r.WorkDir, "run"),
		"--storage-driver", "overlay"}
	cmd := exec.CommandContext(ctx, "buildah", append(base, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("buildah %s failed: %w: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// CheckBuildah returns an error that says how to install buildah when it
// is missing.
func CheckBuildah() error {
	if _, err := exec.LookPath("buildah"); err != nil {
		return fmt.Errorf("buildah is not installed; run apt-get install buildah: %w", err)
	}
	return nil
}

// Run builds an image from the archive by the recipe, imports it into the
// target's containerd and waits until the CRI reports it. It returns each
// stage's seconds. The image and buildah's copies are removed afterwards.
func (r *Recipe) Run(ctx context.Context, rt *runtime.Runtime, archivePath, container, tag string) (
	map[string]float64, error) {
	stages := map[string]float64{}
	ref := "localhost/lpm-bench/recipe:" + tag
	ociArchive := filepath.Join(r.WorkDir, "recipe-"+tag+".tar")
	inNode := filepath.Join(r.TargetDir, "recipe-"+tag+".tar")
	defer func() {
		_ = os.Remove(ociArchive)
		_ = os.Remove(r.Target.HostPath(inNode))
		_, _ = r.buildah(context.WithoutCancel(ctx), "rm", "--all")
		_, _ = r.buildah(context.WithoutCancel(ctx), "rmi", "--all", "--force")
		_ = rt.RemoveImage(context.WithoutCancel(ctx), ref)
	}()
	if err := os.MkdirAll(r.WorkDir, 0o700); err != nil {
		return nil, err
	}

	step := func(name string, f func() error) error {
		start := time.Now()
		if err := f(); err != nil {
			return err
		}
		stages[name] = time.Since(start).Seconds()
		return nil
	}
	var ctr string
	err := step(RecipeFrom, func() (err error) {
		ctr, err = r.buildah(ctx, "from", "scratch")
		return err
	})
	if err != nil {
		return nil, err
	}
	steps := []struct {
		name string
		f    func() error
	}{
		{RecipeAdd, func() error { _, err := r.buildah(ctx, "add", ctr, archivePath, "/"); return err }},
		{RecipeConfig, func() error {
			_, err := r.buildah(ctx, "config", "--annotation", recipeAnnotKey+"="+container, ctr)
			return err
		}},
		{RecipeCommit, func() error { _, err := r.buildah(ctx, "commit", "-q", ctr, ref); return err }},
		{RecipePush, func() error {
			_, err := r.buildah(ctx, "push", "-q", ref, "oci-archive:"+ociArchive+":"+ref)
			return err
		}},
		{RecipeCopy, func() error { return copyFile(ociArchive, r.Target.HostPath(inNode)) }},
		{RecipeImport, func() error {
			_, err := r.Target.Output(ctx, "ctr", "--address", node.ContainerdSocketPath, "-n", "k8s.io", "images",
				"import", inNode)
			return err
		}},
		{RecipeVisible, func() error { _, err := rt.WaitForCRIImage(ctx, ref); return err }},
	}
	for _, s := range steps {
		if err := step(s.name, s.f); err != nil {
			return stages, err
		}
	}
	var total float64
	for _, name := range RecipeStages {
		total += stages[name]
	}
	stages[RecipeTotal] = total
	return stages, nil
}

// copyFile copies src to dst, which stands for the copy to the target
// machine. On the lab both nodes share one disk, so this is a local copy.
func copyFile(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}
