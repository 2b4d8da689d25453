package archive

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// FuzzInspect feeds arbitrary bytes to Inspect. It must never panic, and
// whatever it accepts must hash to the input's digest and name only files
// inside the archive's root. The seeds are valid archives and the hostile
// shapes of TestInspectRejects; testdata/fuzz/FuzzInspect keeps the corpus.
func FuzzInspect(f *testing.F) {
	valid := validEntries(f)
	f.Add(writeTar(f, valid))
	f.Add(writeTar(f, append(valid, file("../escape", "x"))))
	f.Add(writeTar(f, append(valid, entry{hdr: tar.Header{Name: "l", Typeflag: tar.TypeSymlink,
		Linkname: "/etc"}})))
	f.Add(writeTar(f, replace(valid, "rootfs-diff.tar", file("rootfs-diff.tar",
		rootfsDiff(f, entry{hdr: tar.Header{Name: "a", Typeflag: tar.TypeLink, Linkname: "../../b"}})))))
	f.Add(writeTar(f, replace(valid, "rootfs-diff.tar", file("rootfs-diff.tar",
		gzipped(f, rootfsDiff(f, file("etc/hostname", "web")))))))
	data := writeTar(f, valid)
	f.Add(data[:len(data)/2])
	f.Add(append(append([]byte{}, data...), 1, 2, 3))

	limits := Limits{MaxBytes: 1 << 20, MaxEntries: 256, MaxMetadataBytes: 64 << 10}
	f.Fuzz(func(t *testing.T, data []byte) {
		type result struct {
			info *Info
			err  error
		}
		done := make(chan result, 1)
		go func() {
			info, err := Inspect(bytes.NewReader(data), limits)
			done <- result{info, err}
		}()
		var res result
		select {
		case res = <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("Inspect() did not return within 5s for %d bytes of input", len(data))
		}
		info, err := res.info, res.err
		if err != nil {
			var archiveErr *Error
			if !errors.As(err, &archiveErr) {
				t.Fatalf("Inspect() error = %v (%T), want *archive.Error for in-memory input", err, err)
			}
			return
		}

		sum := sha256.Sum256(data)
		if want := digest.NewDigestFromBytes(digest.SHA256, sum[:]); info.Digest != want {
			t.Errorf("Digest = %s, want %s", info.Digest, want)
		}
		if info.Size != int64(len(data)) {
			t.Errorf("Size = %d, want %d", info.Size, len(data))
		}
		for name := range info.Files {
			if path.IsAbs(name) || name != path.Clean(name) || name == ".." || strings.HasPrefix(name, "../") {
				t.Errorf("accepted file name %q leaves the archive root", name)
			}
		}
	})
}
