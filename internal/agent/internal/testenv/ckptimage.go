package testenv

import (
	"os"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/lpm-dev/lpm/internal/agent/archive"
	"github.com/lpm-dev/lpm/internal/agent/ckptimage"
)

// BuildCheckpointImage inspects the checkpoint archive at path and builds
// the checkpoint image of a container named counter from it, as the source
// agent does for migration uid.
func BuildCheckpointImage(t testing.TB, path, uid string) (*ckptimage.Image, *archive.Info) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	info, err := archive.Inspect(f, archive.Limits{})
	_ = f.Close()
	if err != nil {
		t.Fatal(err)
	}
	img, err := ckptimage.Build(ckptimage.Source{ArchivePath: path, Archive: info, Container: "counter",
		MigrationUID: uid, Platform: v1.Platform{OS: "linux", Architecture: "amd64"}})
	if err != nil {
		t.Fatal(err)
	}
	return img, info
}
