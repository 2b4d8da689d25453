package runtime

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"

	"github.com/containerd/containerd/v2/core/mount"
)

func TestReadAhead(t *testing.T) {
	data := make([]byte, 5<<20+123)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.IntN(256))
	}
	broken := errors.New("connection reset")

	cases := []struct {
		name    string
		r       io.Reader
		want    []byte
		wantErr error
	}{
		{name: "whole stream", r: bytes.NewReader(data), want: data},
		{name: "one byte per read", r: iotest.OneByteReader(bytes.NewReader(data[:3000])), want: data[:3000]},
		{name: "empty stream", r: bytes.NewReader(nil), want: []byte{}},
		{name: "broken stream", r: io.MultiReader(bytes.NewReader(data[:2<<20]), iotest.ErrReader(broken)),
			want: data[:2<<20], wantErr: broken},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ra := newReadAhead(tc.r, 2, 1<<20)
			defer func() { _ = ra.Close() }()
			got, err := io.ReadAll(iotest.HalfReader(ra))
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("ReadAll() error = %v, want %v", err, tc.wantErr)
			}
			if !bytes.Equal(got, tc.want) {
				t.Errorf("ReadAll() returned %d bytes, want the %d bytes of the stream", len(got), len(tc.want))
			}
		})
	}
}

func TestReadAheadCloseEarly(t *testing.T) {
	ra := newReadAhead(bytes.NewReader(make([]byte, 10<<20)), 2, 1<<20)
	if _, err := io.ReadFull(ra, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	// Close must return although the goroutine is blocked on a full queue.
	if err := ra.Close(); err != nil {
		t.Errorf("Close() error = %v", err)
	}
}

func TestDirectoryOf(t *testing.T) {
	cases := []struct {
		name   string
		mounts []mount.Mount
		want   string
		wantOK bool
	}{
		{name: "overlayfs layer without parent",
			mounts: []mount.Mount{{Type: "bind", Source: "/var/lib/containerd/snapshots/7/fs",
				Options: []string{"rw", "rbind"}}},
			want: "/proc/42/root/var/lib/containerd/snapshots/7/fs", wantOK: true},
		{name: "read-only bind", mounts: []mount.Mount{{Type: "bind", Source: "/s/7/fs",
			Options: []string{"ro", "rbind"}}}},
		{name: "overlay mount", mounts: []mount.Mount{{Type: "overlay", Source: "overlay",
			Options: []string{"lowerdir=/a", "upperdir=/b", "workdir=/c"}}}},
		{name: "relative source", mounts: []mount.Mount{{Type: "bind", Source: "s/7/fs"}}},
		{name: "several mounts", mounts: []mount.Mount{{Type: "bind", Source: "/a"}, {Type: "bind", Source: "/b"}}},
		{name: "no mount"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := directoryOf(tc.mounts, "/proc/42/root")
			if ok != tc.wantOK || got != tc.want {
				t.Errorf("directoryOf() = %q, %v; want %q, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}
