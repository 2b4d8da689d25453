package imagebuild

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func testSpec(t *testing.T) Spec {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "app")
	if err := os.WriteFile(bin, []byte("#!/bin/true\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	return Spec{
		Ref:        "localhost/lpm-test/app:v1",
		Files:      []File{{Path: "/app", Source: bin}, {Path: "/etc/app/config", Data: []byte("x=1\n")}},
		Dirs:       []string{"/tmp"},
		Entrypoint: []string{"/app"},
		Env:        []string{"PATH=/"},
	}
}

func TestBuildIsReproducible(t *testing.T) {
	first, err := Build(testSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	// Another source file with the same content and another time.
	second, err := Build(testSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := first.Image.Digest()
	d2, _ := second.Image.Digest()
	if d1 != d2 {
		t.Errorf("digests differ: %s and %s", d1, d2)
	}
}

func TestArchiveContents(t *testing.T) {
	img, err := Build(testSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "app.tar")
	if err := WriteArchive(archive, img); err != nil {
		t.Fatal(err)
	}
	loaded, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := loaded.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"/app"}, cf.Config.Entrypoint); diff != "" {
		t.Errorf("entrypoint (-want +got):\n%s", diff)
	}
	layers, err := loaded.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers = %d, %v; want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	var got []string
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, hdr.Name)
		if hdr.ModTime.Unix() != 0 || hdr.Uid != 0 {
			t.Errorf("%s: time %v, uid %d; want epoch and root", hdr.Name, hdr.ModTime, hdr.Uid)
		}
	}
	want := []string{"app", "etc/", "etc/app/", "etc/app/config", "tmp/"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("layer entries (-want +got):\n%s", diff)
	}
}
