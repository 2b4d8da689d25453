package runtime

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestMissingBlobs(t *testing.T) {
	blob := func(name string) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromString(name),
			Size: int64(len(name))}
	}
	root, manifest, config := blob("index"), blob("manifest"), blob("config")
	shared, own := blob("shared layer"), blob("own layer")
	all := []ocispec.Descriptor{root, manifest, config, shared, own}

	for _, tc := range []struct {
		name  string
		descs []ocispec.Descriptor
		has   []ocispec.Descriptor
		want  []ocispec.Descriptor
	}{
		{name: "nothing here", descs: all, want: all},
		{name: "everything here", descs: all, has: all},
		{name: "one shared layer", descs: all, has: []ocispec.Descriptor{shared},
			want: []ocispec.Descriptor{root, manifest, config, own}},
		{name: "layers here, image record missing", descs: all, has: []ocispec.Descriptor{shared, own},
			want: []ocispec.Descriptor{root, manifest, config}},
		{name: "a layer listed twice", descs: []ocispec.Descriptor{config, own, own},
			want: []ocispec.Descriptor{config, own}},
		{name: "no blobs", descs: nil, has: all},
	} {
		t.Run(tc.name, func(t *testing.T) {
			held := map[digest.Digest]bool{}
			for _, d := range tc.has {
				held[d.Digest] = true
			}
			got := MissingBlobs(tc.descs, func(d digest.Digest) bool { return held[d] })
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("MissingBlobs() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
