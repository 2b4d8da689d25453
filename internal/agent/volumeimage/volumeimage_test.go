package volumeimage

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/lpm-dev/lpm/internal/agent/ckptimage"
	"github.com/lpm-dev/lpm/internal/volumedata"
)

func testSource(t *testing.T) Source {
	t.Helper()
	dir := t.TempDir()
	copier := filepath.Join(dir, "copier")
	if err := os.WriteFile(copier, []byte("#!copier"), 0o755); err != nil {
		t.Fatal(err)
	}
	vol := filepath.Join(dir, "cache")
	if err := os.MkdirAll(filepath.Join(vol, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol, "sub", "state"), []byte("12345"), 0o600); err != nil {
		t.Fatal(err)
	}
	return Source{LayerPath: filepath.Join(dir, "layer.tar"), CopierPath: copier,
		Volumes: []volumedata.Volume{{Name: "cache", Dir: vol}}, MigrationUID: "0d1f6b2c-uid",
		User: "1000:2000", Created: time.Unix(1_700_000_000, 0),
		Platform: v1.Platform{OS: "linux", Architecture: "amd64"}}
}

func TestBuildLayerHoldsCopierAndData(t *testing.T) {
	src := testSource(t)

	img, stats, err := Build(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}

	if stats.DataBytes != 5 {
		t.Errorf("DataBytes = %d, want 5", stats.DataBytes)
	}
	info, err := os.Stat(src.LayerPath)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("layer file mode = %v, want 0600", info.Mode().Perm())
	}
	f, err := img.OpenLayer()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	tr := tar.NewReader(f)
	var names []string
	restored := t.TempDir()
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("layer is not a valid tar: %v", err)
		}
		names = append(names, hdr.Name)
		if "/"+hdr.Name == volumedata.DataPath {
			if _, err := volumedata.Extract(tr, map[string]string{"cache": restored}); err != nil {
				t.Fatalf("Extract of the layer's data: %v", err)
			}
		}
	}
	want := []string{"lpm-volume-restore", "lpm-volume-data.tar"}
	if len(names) != 2 || names[0] != want[0] || names[1] != want[1] {
		t.Errorf("layer entries = %q, want %q", names, want)
	}
	if got, err := os.ReadFile(filepath.Join(restored, "sub", "state")); err != nil || string(got) != "12345" {
		t.Errorf("restored file = %q, %v; want %q", got, err, "12345")
	}
}

func TestBuildDigestsAndConfig(t *testing.T) {
	src := testSource(t)

	img, _, err := Build(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}

	data, err := os.ReadFile(src.LayerPath)
	if err != nil {
		t.Fatal(err)
	}
	if got := digest.FromBytes(data).String(); got != img.Layer.Digest.String() {
		t.Errorf("layer digest = %s, want the file's %s", img.Layer.Digest, got)
	}
	if img.Layer.Size != int64(len(data)) {
		t.Errorf("layer size = %d, want %d", img.Layer.Size, len(data))
	}
	var cfg v1.ConfigFile
	if err := json.Unmarshal(img.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != img.Layer.Digest {
		t.Errorf("diff IDs = %v, want the layer digest", cfg.RootFS.DiffIDs)
	}
	if cfg.Config.User != "1000:2000" || len(cfg.Config.Entrypoint) != 1 ||
		cfg.Config.Entrypoint[0] != volumedata.CopierPath {
		t.Errorf("config user %q entrypoint %q, want 1000:2000 and %s", cfg.Config.User, cfg.Config.Entrypoint,
			volumedata.CopierPath)
	}
	again, err := ckptimage.FromBlobs(img.Index, img.Manifest, img.Config, img.ArchivePath)
	if err != nil {
		t.Fatalf("FromBlobs: %v", err)
	}
	if again.Digest() != img.Digest() || again.TotalBytes() != img.TotalBytes() {
		t.Errorf("image read back from its blobs differs")
	}
}

func TestBuildRemovesLayerOnError(t *testing.T) {
	src := testSource(t)
	src.Limits = volumedata.Limits{MaxDataBytes: 4}

	_, _, err := Build(context.Background(), src)

	if !errors.Is(err, volumedata.ErrTooLarge) {
		t.Errorf("Build error = %v, want ErrTooLarge", err)
	}
	if _, err := os.Stat(src.LayerPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("layer file left behind after a failed build")
	}
}

func TestSingleBlockHeaderLargeSize(t *testing.T) {
	hdr, err := singleBlockHeader(&tar.Header{Name: "lpm-volume-data.tar", Typeflag: tar.TypeReg,
		Size: 9 << 30, Mode: 0o444, ModTime: time.Unix(0, 0), Format: tar.FormatGNU})
	if err != nil {
		t.Fatal(err)
	}
	if len(hdr) != blockSize {
		t.Errorf("header length = %d, want %d", len(hdr), blockSize)
	}
}
