package transfer

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// FuzzParseRoute checks that no request path the server accepts can name
// anything but a migration UID, a container name and a sha256 digest.
func FuzzParseRoute(f *testing.F) {
	d := digest.FromString("x").String()
	for _, p := range []string{
		"/v2/lpm/" + migrationUID + "/counter/blobs/" + d,
		"/v2/lpm/" + migrationUID + "/counter/manifests/" + d,
		"/v2/lpm/../../etc/passwd/blobs/" + d,
		"/v2/lpm/" + migrationUID + "/counter/blobs/sha256:..%2f..",
		"/v2/lpm//counter/blobs/" + d,
	} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, path string) {
		r, err := parseRoute(path)
		if err != nil {
			return
		}
		for _, part := range []string{r.migrationUID, r.container} {
			if part == "" || strings.ContainsAny(part, "/.%\\\x00") {
				t.Errorf("parseRoute(%q) accepted path part %q", path, part)
			}
		}
		if r.digest.Validate() != nil || r.digest.Algorithm() != digest.SHA256 {
			t.Errorf("parseRoute(%q) accepted digest %q", path, r.digest)
		}
	})
}

// FuzzParseBaseImageRoute checks that no base image path the server
// accepts names anything but Kubernetes names and a sha256 digest or the
// root tag.
func FuzzParseBaseImageRoute(f *testing.F) {
	d := digest.FromString("x").String()
	for _, p := range []string{
		"/v2/lpm-base/default/move-web/" + migrationUID + "/counter/blobs/" + d,
		"/v2/lpm-base/default/move.web/" + migrationUID + "/counter/manifests/base",
		"/v2/lpm-base/default/../" + migrationUID + "/counter/blobs/" + d,
		"/v2/lpm-base/default/.move/" + migrationUID + "/counter/blobs/sha256:..%2f..",
	} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, path string) {
		r, err := parseBaseImageRoute(path)
		if err != nil {
			return
		}
		for _, part := range []string{r.req.Namespace, r.req.MigrationUID, r.req.Container} {
			if part == "" || strings.ContainsAny(part, "/.%\\\x00") {
				t.Errorf("parseBaseImageRoute(%q) accepted path part %q", path, part)
			}
		}
		if r.req.Name == "" || strings.ContainsAny(r.req.Name, "/%\\\x00") || strings.Contains(r.req.Name, "..") {
			t.Errorf("parseBaseImageRoute(%q) accepted migration name %q", path, r.req.Name)
		}
		if !r.root && (r.reference.Validate() != nil || r.reference.Algorithm() != digest.SHA256) {
			t.Errorf("parseBaseImageRoute(%q) accepted digest %q", path, r.reference)
		}
	})
}

// FuzzBlobResponse feeds arbitrary answers of a source agent to the
// client's response handling: whatever it delivers without an error must be
// exactly the blob's bytes from the requested offset. A resumed (206)
// stream cannot be hashed without the part received before, so there only
// its length is checked here; containerd's content writer verifies the
// whole blob's digest when the import commits it.
func FuzzBlobResponse(f *testing.F) {
	blob := []byte(strings.Repeat("checkpoint-bytes", 64))
	f.Add(200, "", blob, int64(0))
	f.Add(206, "bytes 10-1023/1024", blob[10:], int64(10))
	f.Add(206, "bytes 0-1023/1024", blob, int64(10))
	f.Add(200, "", blob[:512], int64(0))
	f.Add(200, "", append(append([]byte{}, blob...), 'x'), int64(0))
	f.Add(200, "", blob, int64(100))
	f.Add(404, "", []byte("not found"), int64(0))
	f.Add(206, "bytes x-y/z", blob, int64(5))

	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(blob),
		Size: int64(len(blob))}
	f.Fuzz(func(t *testing.T, status int, contentRange string, body []byte, offset int64) {
		resp := &http.Response{StatusCode: status, Header: http.Header{},
			Body: io.NopCloser(bytes.NewReader(body))}
		if contentRange != "" {
			resp.Header.Set("Content-Range", contentRange)
		}
		rc, err := readBlobResponse(resp, desc, offset)
		if err != nil {
			return
		}
		got, err := io.ReadAll(rc)
		if err != nil {
			return
		}
		if offset < 0 || offset > int64(len(blob)) {
			t.Fatalf("delivered %d bytes for invalid offset %d without an error", len(got), offset)
		}
		if status == http.StatusPartialContent {
			if int64(len(got)) != int64(len(blob))-offset {
				t.Errorf("delivered %d bytes of a resumed stream, want %d", len(got), int64(len(blob))-offset)
			}
			return
		}
		if !bytes.Equal(got, blob[offset:]) {
			t.Errorf("delivered %d bytes from offset %d without an error, want the blob's tail", len(got), offset)
		}
	})
}
