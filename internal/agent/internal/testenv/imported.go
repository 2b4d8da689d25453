package testenv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/lpm-dev/lpm/internal/agent/runtime"
)

// ImportCounterImage imports the counter image into a runtime under name,
// without a registry: the runtime knows it only by that name and its ID,
// as it knows an image loaded from a file.
func ImportCounterImage(ctx context.Context, t testing.TB, rt *runtime.Runtime, name string) {
	t.Helper()
	binary := buildWorkload(t)
	rc, err := appLayer(binary)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(mutate.MediaType(mutate.ConfigMediaType(empty.Image, types.OCIConfigJSON),
		types.OCIManifestSchema1), static.NewLayer(data, types.OCIUncompressedLayer))
	if err != nil {
		t.Fatal(err)
	}
	// An environment of its own gives the image an ID no pulled image has.
	if img, err = mutate.Config(img, v1.Config{Entrypoint: []string{"/app", "counter"},
		Env: []string{"LPM_TEST_IMPORTED=1"}}); err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.ConfigFile(img, withPlatform(t, img)); err != nil {
		t.Fatal(err)
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux",
			Architecture: "amd64"}}})

	src := ggcrSource{}
	add := func(raw []byte, err error) {
		if err != nil {
			t.Fatal(err)
		}
		src[digest.FromBytes(raw).String()] = raw
	}
	add(idx.RawManifest())
	add(img.RawManifest())
	add(img.RawConfigFile())
	src[digest.FromBytes(data).String()] = data
	indexRaw, _ := idx.RawManifest()
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromBytes(indexRaw),
		Size: int64(len(indexRaw))}
	if _, err := rt.Import(ctx, runtime.ImportRequest{Name: name, Index: desc}, src); err != nil {
		t.Fatalf("failed to import %s: %v", name, err)
	}
	if _, err := rt.WaitForCRIImage(ctx, name); err != nil {
		t.Fatal(err)
	}
}

// ggcrSource serves blobs from memory by digest.
type ggcrSource map[string][]byte

func (s ggcrSource) Open(_ context.Context, desc ocispec.Descriptor, offset int64) (io.ReadCloser, error) {
	data, ok := s[desc.Digest.String()]
	if !ok || offset > int64(len(data)) {
		return nil, fmt.Errorf("blob %s not found", desc.Digest)
	}
	return io.NopCloser(bytes.NewReader(data[offset:])), nil
}
