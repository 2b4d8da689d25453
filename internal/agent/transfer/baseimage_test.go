package transfer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestParseBaseImageRoute(t *testing.T) {
	const d = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	req := BaseImageRequest{Namespace: "default", Name: "move.web", MigrationUID: migrationUID, Container: "app"}
	prefix := "/v2/lpm-base/default/move.web/" + migrationUID + "/app/"
	for _, tc := range []struct {
		name    string
		path    string
		want    *baseImageRoute
		wantErr bool
	}{
		{name: "root", path: prefix + "manifests/base", want: &baseImageRoute{req: req, kind: "manifests", root: true}},
		{name: "manifest by digest", path: prefix + "manifests/" + d,
			want: &baseImageRoute{req: req, kind: "manifests", reference: d}},
		{name: "blob", path: prefix + "blobs/" + d, want: &baseImageRoute{req: req, kind: "blobs", reference: d}},
		{name: "tag in blobs", path: prefix + "blobs/base", wantErr: true},
		{name: "other tag", path: prefix + "manifests/latest", wantErr: true},
		{name: "sha512 digest", path: prefix + "blobs/sha512:" + string(bytes.Repeat([]byte("1"), 128)),
			wantErr: true},
		{name: "unknown kind", path: prefix + "tags/" + d, wantErr: true},
		{name: "dot segment", path: "/v2/lpm-base/default/../" + migrationUID + "/app/blobs/" + d, wantErr: true},
		{name: "upper-case namespace", path: "/v2/lpm-base/Default/move/" + migrationUID + "/app/blobs/" + d,
			wantErr: true},
		{name: "missing container", path: "/v2/lpm-base/default/move/" + migrationUID + "/blobs/" + d,
			wantErr: true},
		{name: "checkpoint image path", path: "/v2/lpm/" + migrationUID + "/app/blobs/" + d, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseBaseImageRoute(tc.path)
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseBaseImageRoute(%q) error = %v, want error %v", tc.path, err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(baseImageRoute{})); diff != "" {
				t.Errorf("parseBaseImageRoute(%q) mismatch (-want +got):\n%s", tc.path, diff)
			}
		})
	}
}

// fakeBaseImages stands in for the agent's authority on base images: it
// serves one image from memory to node-b and rejects every other peer. The
// agent's rule runs against a real API server and containerd in the
// agent's tests.
type fakeBaseImages struct {
	blobs map[digest.Digest][]byte
	img   *BaseImage
}

func newFakeBaseImages(root []byte, layers ...[]byte) *fakeBaseImages {
	f := &fakeBaseImages{blobs: map[digest.Digest][]byte{}}
	rootDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(root),
		Size: int64(len(root))}
	f.img = &BaseImage{Root: rootDesc, Blobs: map[digest.Digest]ocispec.Descriptor{rootDesc.Digest: rootDesc},
		Open: func(_ context.Context, desc ocispec.Descriptor) (BlobReader, error) {
			data, ok := f.blobs[desc.Digest]
			if !ok {
				return nil, fmt.Errorf("blob %s not found", desc.Digest)
			}
			return memoryBlob{bytes.NewReader(data)}, nil
		}}
	f.blobs[rootDesc.Digest] = root
	for _, l := range layers {
		desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(l),
			Size: int64(len(l))}
		f.img.Blobs[desc.Digest] = desc
		f.blobs[desc.Digest] = l
	}
	return f
}

type memoryBlob struct{ *bytes.Reader }

func (memoryBlob) Close() error { return nil }

func (f *fakeBaseImages) BaseImage(_ context.Context, peer *Peer, req BaseImageRequest) (*BaseImage, error) {
	if peer.NodeName != "node-b" || req.Container != "app" {
		return nil, fmt.Errorf("%w: node %s", ErrForbidden, peer.NodeName)
	}
	return f.img, nil
}

func TestServeBaseImage(t *testing.T) {
	root := []byte(`{"schemaVersion":2}`)
	layer := bytes.Repeat([]byte("layer"), 50000)
	outside := []byte("a blob of another image")
	images := newFakeBaseImages(root, layer)
	images.blobs[digest.FromBytes(outside)] = outside
	env := startTestServer(t, nil)
	env.server.WithBaseImages(images)
	req := BaseImageRequest{Namespace: "default", Name: "move-web", MigrationUID: migrationUID, Container: "app"}
	source := func(identity *Identity, token string, req BaseImageRequest) *Source {
		tokenFile := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
			t.Fatal(err)
		}
		return NewClient(identity, tokenFile, clocktesting.NewFakePassiveClock(time.Now())).
			BaseImageSource(env.endpoint, env.fps["node-a"], req)
	}
	ctx := context.Background()
	src := source(env.target, targetToken, req)

	desc, data, err := src.Root(ctx, digest.FromBytes(root))
	if err != nil {
		t.Fatalf("Root() error = %v", err)
	}
	if !bytes.Equal(data, root) || desc.MediaType != ocispec.MediaTypeImageManifest || desc.Size != int64(len(root)) {
		t.Errorf("Root() = %+v, %q; want the manifest %q", desc, data, root)
	}
	if _, _, err := src.Root(ctx, digest.FromString("another image")); !errors.Is(err, ErrDigest) {
		t.Errorf("Root() with another expected digest error = %v, want %v", err, ErrDigest)
	}

	layerDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(layer),
		Size: int64(len(layer))}
	got, err := readBlob(ctx, src, layerDesc, 1000)
	if err != nil {
		t.Fatalf("layer from offset 1000 error = %v", err)
	}
	if !bytes.Equal(got, layer[1000:]) {
		t.Errorf("layer from offset 1000 has %d bytes, want the %d after the offset", len(got), len(layer)-1000)
	}

	outsideDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(outside),
		Size: int64(len(outside))}
	third, err := NewIdentity("node-c", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	env.fps["node-c"] = third.Fingerprint
	otherContainer := req
	otherContainer.Container = "db"
	for _, tc := range []struct {
		name       string
		src        *Source
		desc       ocispec.Descriptor
		wantStatus int
	}{
		{name: "blob outside the image", src: src, desc: outsideDesc, wantStatus: http.StatusNotFound},
		{name: "peer that is not the target", src: source(third, otherToken, req), desc: layerDesc,
			wantStatus: http.StatusForbidden},
		{name: "peer without a published certificate", src: source(env.target, otherToken, req), desc: layerDesc,
			wantStatus: http.StatusUnauthorized},
		{name: "container the authority rejects", src: source(env.target, targetToken, otherContainer),
			desc: layerDesc, wantStatus: http.StatusForbidden},
		{name: "unknown token", src: source(env.target, "no-such-token", req), desc: layerDesc,
			wantStatus: http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readBlob(ctx, tc.src, tc.desc, 0)
			var statusErr *StatusError
			if !errors.As(err, &statusErr) || statusErr.Code != tc.wantStatus {
				t.Errorf("fetch error = %v, want status %d", err, tc.wantStatus)
			}
		})
	}
}
