package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"strconv"
	"testing"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/platforms"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/lpm-dev/lpm/internal/agent/runtime"
)

// LayeredImage describes an image ImportLayeredCounterImage imported.
type LayeredImage struct {
	// ID is the image's config digest.
	ID string
	// ExtraLayerBytes is the size of the extra layer, 0 without one.
	ExtraLayerBytes int64
}

// ImportLayeredCounterImage imports into a runtime, under name and without
// a registry, an image whose first layer is the counter program (the same
// layer on every node of a test) and whose second layer, when extra is
// set, holds one file /extra with that content. env sets the image's
// environment, which makes its ID unique. It writes the blobs and the
// image record through containerd's API and unpacks the image, as loading
// an image from a file does.
func ImportLayeredCounterImage(ctx context.Context, t testing.TB, rt *runtime.Runtime, name, env string,
	extra []byte) LayeredImage {
	t.Helper()
	rc, err := appLayer(buildWorkload(t))
	if err != nil {
		t.Fatal(err)
	}
	app, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	layers := [][]byte{app}
	if extra != nil {
		layers = append(layers, fileLayer(t, "extra", extra))
	}

	img := mutate.MediaType(mutate.ConfigMediaType(empty.Image, types.OCIConfigJSON), types.OCIManifestSchema1)
	for _, data := range layers {
		if img, err = mutate.AppendLayers(img, static.NewLayer(data, types.OCIUncompressedLayer)); err != nil {
			t.Fatal(err)
		}
	}
	if img, err = mutate.Config(img, v1.Config{Entrypoint: []string{"/app", "counter"}, Env: []string{env}}); err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.ConfigFile(img, withPlatform(t, img)); err != nil {
		t.Fatal(err)
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux",
			Architecture: "amd64"}}})

	// containerd's garbage collection removes content that no image or lease
	// references. The lease keeps the blobs until the image is unpacked.
	ctx, done, err := rt.Client().WithLease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := done(context.WithoutCancel(ctx)); err != nil {
			t.Errorf("failed to release the import's lease: %v", err)
		}
	}()
	cs := rt.Client().ContentStore()
	write := func(mediaType string, data []byte, labels map[string]string) ocispec.Descriptor {
		desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}
		if err := content.WriteBlob(ctx, cs, "lpm-test-"+desc.Digest.Encoded(), bytes.NewReader(data), desc,
			content.WithLabels(labels)); err != nil {
			t.Fatal(err)
		}
		return desc
	}
	mustRaw := func(raw []byte, err error) []byte {
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	manifestLabels := map[string]string{}
	for i, data := range layers {
		d := write(ocispec.MediaTypeImageLayer, data, nil)
		manifestLabels["containerd.io/gc.ref.content.l."+strconv.Itoa(i)] = d.Digest.String()
	}
	config := write(ocispec.MediaTypeImageConfig, mustRaw(img.RawConfigFile()), nil)
	manifestLabels["containerd.io/gc.ref.content.config"] = config.Digest.String()
	manifest := write(ocispec.MediaTypeImageManifest, mustRaw(img.RawManifest()), manifestLabels)
	index := write(ocispec.MediaTypeImageIndex, mustRaw(idx.RawManifest()),
		map[string]string{"containerd.io/gc.ref.content.m.0": manifest.Digest.String()})

	record := images.Image{Name: name, Target: index}
	if _, err := rt.Client().ImageService().Create(ctx, record); err != nil {
		t.Fatalf("failed to create image %s: %v", name, err)
	}
	if err := containerd.NewImageWithPlatform(rt.Client(), record, platforms.DefaultStrict()).
		Unpack(ctx, "overlayfs"); err != nil {
		t.Fatalf("failed to unpack image %s: %v", name, err)
	}
	out := LayeredImage{ID: config.Digest.String()}
	if extra != nil {
		out.ExtraLayerBytes = int64(len(layers[1]))
	}
	if _, err := rt.WaitForCRIImage(ctx, name); err != nil {
		t.Fatal(err)
	}
	return out
}

func fileLayer(t testing.TB, name string, data []byte) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)),
		Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
