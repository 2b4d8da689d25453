package imagebuild

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// moduleDir is the module's root, relative to this package.
const moduleDir = "../.."

// buildTwice builds c twice, as two runs of make image would, and returns
// both images.
func buildTwice(t *testing.T, c Component) (Image, Image) {
	t.Helper()
	ctx := context.WithoutCancel(t.Context())
	first, err := BuildComponent(ctx, moduleDir, c, "localhost/lpm-test/"+c.Name+":v1", "v1")
	if err != nil {
		t.Fatal(err)
	}
	second, err := BuildComponent(ctx, moduleDir, c, "localhost/lpm-test/"+c.Name+":v1", "v1")
	if err != nil {
		t.Fatal(err)
	}
	return first, second
}

func TestComponentImages(t *testing.T) {
	testCases := []struct {
		component Component
		wantUser  string
	}{
		{Controller, "65532:65532"},
		{Agent, ""},
	}
	for _, tc := range testCases {
		t.Run(tc.component.Name, func(t *testing.T) {
			first, second := buildTwice(t, tc.component)

			d1, err := first.Image.Digest()
			if err != nil {
				t.Fatal(err)
			}
			d2, err := second.Image.Digest()
			if err != nil {
				t.Fatal(err)
			}
			if d1 != d2 {
				t.Errorf("two builds have the digests %s and %s, want the same", d1, d2)
			}
			if a1, a2 := archiveBytes(t, first), archiveBytes(t, second); !bytes.Equal(a1, a2) {
				t.Errorf("two builds write different archives")
			}

			cf, err := first.Image.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.Config.User != tc.wantUser {
				t.Errorf("user = %q, want %q", cf.Config.User, tc.wantUser)
			}
			if diff := cmp.Diff([]string{"/" + tc.component.Name}, cf.Config.Entrypoint); diff != "" {
				t.Errorf("entrypoint mismatch (-want +got):\n%s", diff)
			}
			if got := cf.Config.Labels["org.opencontainers.image.version"]; got != "v1" {
				t.Errorf("version label = %q, want v1", got)
			}
			names := []string{tc.component.Name}
			for _, c := range tc.component.Companions {
				names = append(names, c.Name)
			}
			checkStaticBinaries(t, first, names)
		})
	}
}

func archiveBytes(t *testing.T, img Image) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "image.tar")
	if err := WriteArchive(path, img); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// checkStaticBinaries checks that the image's files are the binaries
// names, each executable and linked statically, since the image has no C
// library.
func checkStaticBinaries(t *testing.T, img Image, names []string) {
	t.Helper()
	layers, err := img.Image.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("image has %d layers, want 1", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	var files []string
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, hdr.Name)
		name := hdr.Name
		if !slices.Contains(names, name) {
			continue
		}
		if hdr.Mode&0o111 == 0 {
			t.Errorf("%s has mode %o, want it executable", name, hdr.Mode)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		f, err := elf.NewFile(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s is no ELF binary: %v", name, err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s names a dynamic loader; the image has none", name)
			}
		}
	}
	if diff := cmp.Diff(names, files); diff != "" {
		t.Errorf("layer files mismatch (-want +got):\n%s", diff)
	}
}
