package ckptimage

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/lpm-dev/lpm/internal/agent/archive"
	"github.com/lpm-dev/lpm/internal/agent/internal/archivetest"
)

func buildTestImage(t *testing.T) (*Image, string, digest.Digest) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "checkpoint.tar")
	archivetest.WriteFile(t, path, archivetest.Options{PagesBytes: 64 << 10})
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	info, err := archive.Inspect(f, archive.Limits{})
	if err != nil {
		t.Fatalf("Inspect() error = %v", err)
	}

	img, err := Build(Source{
		ArchivePath: path, Archive: info, Container: "counter", Pod: "web", Namespace: "default",
		PodUID: "pod-uid", MigrationUID: "4f1d2c3b-aaaa-bbbb-cccc-000000000000",
		Platform: v1.Platform{OS: "linux", Architecture: "amd64"},
	})
	if err != nil {
		t.Fatalf("Build() error = %v", err)
	}
	return img, path, info.Digest
}

func fileDigest(t *testing.T, path string) digest.Digest {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return digest.NewDigest(digest.SHA256, h)
}

func TestBuildAnnotatesBothLevels(t *testing.T) {
	img, _, _ := buildTestImage(t)

	var index v1.IndexManifest
	if err := json.Unmarshal(img.Index, &index); err != nil {
		t.Fatalf("index is not JSON: %v", err)
	}
	var manifest v1.Manifest
	if err := json.Unmarshal(img.Manifest, &manifest); err != nil {
		t.Fatalf("manifest is not JSON: %v", err)
	}
	levels := map[string]map[string]string{"index": index.Annotations, "manifest": manifest.Annotations}
	for level, anns := range levels {
		for _, key := range []string{AnnotationContainerName, AnnotationCRIOName} {
			if got := anns[key]; got != "counter" {
				t.Errorf("%s annotation %s = %q, want counter", level, key, got)
			}
		}
		if got := anns[AnnotationMigrationUID]; got != "4f1d2c3b-aaaa-bbbb-cccc-000000000000" {
			t.Errorf("%s annotation %s = %q, want the migration UID", level, AnnotationMigrationUID, got)
		}
	}
	if index.MediaType != types.OCIImageIndex {
		t.Errorf("index media type = %s, want %s", index.MediaType, types.OCIImageIndex)
	}
}

func TestBuildLayerIsArchive(t *testing.T) {
	img, path, archiveDigest := buildTestImage(t)
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}

	var index v1.IndexManifest
	if err := json.Unmarshal(img.Index, &index); err != nil {
		t.Fatal(err)
	}
	var manifest v1.Manifest
	if err := json.Unmarshal(img.Manifest, &manifest); err != nil {
		t.Fatal(err)
	}
	var config v1.ConfigFile
	if err := json.Unmarshal(img.Config, &config); err != nil {
		t.Fatal(err)
	}

	wantIndexEntry := v1.Descriptor{
		MediaType: types.OCIManifestSchema1, Size: int64(len(img.Manifest)),
		Digest:   v1.Hash{Algorithm: "sha256", Hex: img.ManifestDigest().Encoded()},
		Platform: &v1.Platform{OS: "linux", Architecture: "amd64"},
		// go-containerregistry fills artifactType with the config's type.
		ArtifactType: string(types.OCIConfigJSON),
	}
	if diff := cmp.Diff([]v1.Descriptor{wantIndexEntry}, index.Manifests); diff != "" {
		t.Errorf("index manifests mismatch (-want +got):\n%s", diff)
	}
	wantLayer := v1.Descriptor{MediaType: types.OCIUncompressedLayer, Size: before.Size(),
		Digest: v1.Hash{Algorithm: "sha256", Hex: archiveDigest.Encoded()}}
	if diff := cmp.Diff([]v1.Descriptor{wantLayer}, manifest.Layers); diff != "" {
		t.Errorf("manifest layers mismatch (-want +got):\n%s", diff)
	}
	if manifest.Config.Digest.Hex != img.ConfigDigest().Encoded() {
		t.Errorf("manifest config digest = %s, want %s", manifest.Config.Digest, img.ConfigDigest())
	}
	wantDiffIDs := []v1.Hash{{Algorithm: "sha256", Hex: archiveDigest.Encoded()}}
	if diff := cmp.Diff(wantDiffIDs, config.RootFS.DiffIDs); diff != "" {
		t.Errorf("config diff IDs mismatch (-want +got):\n%s", diff)
	}
	if config.OS != "linux" || config.Architecture != "amd64" {
		t.Errorf("config platform = %s/%s, want linux/amd64", config.OS, config.Architecture)
	}

	if got := fileDigest(t, path); got != archiveDigest {
		t.Errorf("archive digest after Build = %s, want %s (unchanged)", got, archiveDigest)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !after.ModTime().Equal(before.ModTime()) || after.Size() != before.Size() {
		t.Errorf("archive changed by Build: %v %d -> %v %d", before.ModTime(), before.Size(),
			after.ModTime(), after.Size())
	}
	if img.TotalBytes() != before.Size()+int64(len(img.Index)+len(img.Manifest)+len(img.Config)) {
		t.Errorf("TotalBytes() = %d, want the sum of all blobs", img.TotalBytes())
	}
}

func TestBlobLookup(t *testing.T) {
	img, _, archiveDigest := buildTestImage(t)

	cases := []struct {
		name     string
		digest   digest.Digest
		wantType types.MediaType
		wantOK   bool
	}{
		{name: "index", digest: img.Digest(), wantType: types.OCIImageIndex, wantOK: true},
		{name: "manifest", digest: img.ManifestDigest(), wantType: types.OCIManifestSchema1, wantOK: true},
		{name: "config", digest: img.ConfigDigest(), wantType: types.OCIConfigJSON, wantOK: true},
		{name: "layer is not a small blob", digest: archiveDigest},
		{name: "unknown", digest: digest.FromString("other")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data, mediaType, ok := img.Blob(tc.digest)
			if ok != tc.wantOK || mediaType != tc.wantType {
				t.Fatalf("Blob() = %s, %v, want %s, %v", mediaType, ok, tc.wantType, tc.wantOK)
			}
			if ok && digest.FromBytes(data) != tc.digest {
				t.Errorf("Blob() data digest = %s, want %s", digest.FromBytes(data), tc.digest)
			}
		})
	}
}

func TestReferences(t *testing.T) {
	uid := "4f1d2c3b-aaaa-bbbb-cccc-000000000000"
	longPod := fmt.Sprintf("%0120d", 7)
	cases := []struct {
		name string
		got  string
		want string
	}{
		{name: "direct", got: DirectReference("team-a", "web", "app", uid),
			want: "localhost/lpm/team-a/web-app:4f1d2c3b"},
		{name: "registry", got: RegistryReference("registry.example.com:5000/ckpt", "web", "app", uid),
			want: "registry.example.com:5000/ckpt:web-app-4f1d2c3b"},
		{name: "registry long pod", got: RegistryReference("r/x", longPod, "app", uid),
			want: "r/x:" + longPod[len(longPod)-115:] + "-app-4f1d2c3b"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("reference = %q, want %q", tc.got, tc.want)
			}
		})
	}
}
