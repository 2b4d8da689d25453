package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/lpm-dev/lpm/internal/agent/ckptimage"
	"github.com/lpm-dev/lpm/internal/agent/internal/archivetest"
	"github.com/lpm-dev/lpm/internal/agent/internal/testenv"
)

// fakeAuthenticator stands in for the API server's TokenReview: it knows a
// fixed set of tokens. The TokenReview path runs against a real API server
// in the agent's integration test.
type fakeAuthenticator map[string]*Peer

func (f fakeAuthenticator) Authenticate(_ context.Context, token string) (*Peer, error) {
	if p, ok := f[token]; ok {
		return p, nil
	}
	return nil, errors.New("unknown token")
}

// fakeFingerprints stands in for the NodeAgents' published fingerprints.
type fakeFingerprints map[string]string

func (f fakeFingerprints) Fingerprint(_ context.Context, node string) (string, error) {
	if fp, ok := f[node]; ok {
		return fp, nil
	}
	return "", errors.New("no NodeAgent")
}

type testEnv struct {
	server   *Server
	endpoint string
	offers   *OfferSet
	img      *ckptimage.Image
	target   *Identity
	fps      fakeFingerprints
	dir      string
}

const (
	migrationUID = "4f1d2c3b-aaaa-bbbb-cccc-000000000000"
	targetToken  = "target-token"
	otherToken   = "other-token"
)

func newTestImage(t *testing.T, dir string, pagesBytes int64) *ckptimage.Image {
	t.Helper()
	path := filepath.Join(dir, "checkpoint.tar")
	archivetest.WriteFile(t, path, archivetest.Options{PagesBytes: pagesBytes})
	img, _ := testenv.BuildCheckpointImage(t, path, migrationUID)
	return img
}

func startTestServer(t *testing.T, handler func(*Server) http.Handler) *testEnv {
	t.Helper()
	clk := clocktesting.NewFakePassiveClock(time.Now())
	source, err := NewIdentity("node-a", clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	target, err := NewIdentity("node-b", clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	env := &testEnv{offers: &OfferSet{}, target: target, dir: dir,
		fps: fakeFingerprints{"node-a": source.Fingerprint, "node-b": target.Fingerprint}}
	env.img = newTestImage(t, dir, 256<<10)
	env.offers.Set(migrationUID, &Offer{TargetNode: "node-b", Images: map[string]*ckptimage.Image{
		"counter": env.img}})
	auth := fakeAuthenticator{
		targetToken: {Username: "system:serviceaccount:lpm-system:lpm-agent", NodeName: "node-b"},
		otherToken:  {Username: "system:serviceaccount:lpm-system:lpm-agent", NodeName: "node-c"},
	}
	env.server = NewServer(source, auth, env.fps, env.offers, clk, logr.Discard())

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = env.server
	if handler != nil {
		h = handler(env.server)
	}
	srv := &http.Server{Handler: h, TLSConfig: env.server.TLSConfig(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	env.endpoint = ln.Addr().String()
	return env
}

func (env *testEnv) source(t *testing.T, identity *Identity, token, pinned string) *Source {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	c := NewClient(identity, tokenFile, clocktesting.NewFakePassiveClock(time.Now()))
	return c.Source(env.endpoint, pinned, migrationUID, "counter")
}

func descriptors(img *ckptimage.Image) []ocispec.Descriptor {
	return []ocispec.Descriptor{
		img.Descriptor(),
		{MediaType: ocispec.MediaTypeImageManifest, Digest: img.ManifestDigest(), Size: int64(len(img.Manifest))},
		{MediaType: ocispec.MediaTypeImageConfig, Digest: img.ConfigDigest(), Size: int64(len(img.Config))},
		{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.Digest(img.Layer.Digest.String()),
			Size: img.Layer.Size},
	}
}

func readBlob(ctx context.Context, src *Source, desc ocispec.Descriptor, offset int64) ([]byte, error) {
	rc, err := src.Open(ctx, desc, offset)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rc.Close() }()
	return io.ReadAll(rc)
}

func TestFetchEveryBlob(t *testing.T) {
	env := startTestServer(t, nil)
	src := env.source(t, env.target, targetToken, env.fps["node-a"])

	for _, desc := range descriptors(env.img) {
		data, err := readBlob(context.Background(), src, desc, 0)
		if err != nil {
			t.Fatalf("fetch %s error = %v", desc.MediaType, err)
		}
		if digest.FromBytes(data) != desc.Digest {
			t.Errorf("fetched %s has digest %s, want %s", desc.MediaType, digest.FromBytes(data), desc.Digest)
		}
	}
}

func TestFetchResumesFromOffset(t *testing.T) {
	env := startTestServer(t, nil)
	src := env.source(t, env.target, targetToken, env.fps["node-a"])
	layer := descriptors(env.img)[3]
	whole, err := os.ReadFile(env.img.ArchivePath)
	if err != nil {
		t.Fatal(err)
	}

	data, err := readBlob(context.Background(), src, layer, 100_000)

	if err != nil {
		t.Fatalf("ranged fetch error = %v", err)
	}
	if string(data) != string(whole[100_000:]) {
		t.Errorf("ranged fetch returned %d bytes that differ from the archive's tail", len(data))
	}
}

func TestFetchRejected(t *testing.T) {
	env := startTestServer(t, nil)
	stranger, err := NewIdentity("node-b", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	layer := descriptors(env.img)[3]

	cases := []struct {
		name       string
		identity   *Identity
		token      string
		pinned     string
		wantStatus int
		wantErr    error
	}{
		{name: "wrong token", identity: env.target, token: "forged", pinned: env.fps["node-a"],
			wantStatus: http.StatusUnauthorized},
		{name: "wrong client certificate", identity: stranger, token: targetToken, pinned: env.fps["node-a"],
			wantStatus: http.StatusUnauthorized},
		{name: "agent of another node", identity: env.target, token: otherToken, pinned: env.fps["node-a"],
			wantStatus: http.StatusUnauthorized},
		{name: "wrong server pin", identity: env.target, token: targetToken, pinned: env.fps["node-b"],
			wantErr: ErrPinMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := env.source(t, tc.identity, tc.token, tc.pinned)

			_, err := readBlob(context.Background(), src, layer, 0)

			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) && (err == nil || !strings.Contains(err.Error(),
					tc.wantErr.Error())) {
					t.Errorf("fetch error = %v, want %v", err, tc.wantErr)
				}
				return
			}
			var statusErr *StatusError
			if !errors.As(err, &statusErr) || statusErr.Code != tc.wantStatus {
				t.Errorf("fetch error = %v, want status %d", err, tc.wantStatus)
			}
		})
	}
}

func TestFetchOtherNodesMigration(t *testing.T) {
	env := startTestServer(t, nil)
	// node-c has a certificate and a valid token, but the migration's
	// target is node-b.
	third, err := NewIdentity("node-c", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	env.fps["node-c"] = third.Fingerprint
	src := env.source(t, third, otherToken, env.fps["node-a"])

	_, err = readBlob(context.Background(), src, descriptors(env.img)[3], 0)

	var statusErr *StatusError
	if !errors.As(err, &statusErr) || statusErr.Code != http.StatusForbidden {
		t.Errorf("fetch error = %v, want status 403", err)
	}
}

func TestFetchWithdrawnOffer(t *testing.T) {
	env := startTestServer(t, nil)
	env.offers.Remove(migrationUID)
	src := env.source(t, env.target, targetToken, env.fps["node-a"])

	_, err := readBlob(context.Background(), src, descriptors(env.img)[0], 0)

	var statusErr *StatusError
	if !errors.As(err, &statusErr) || statusErr.Code != http.StatusNotFound {
		t.Errorf("fetch error = %v, want status 404", err)
	}
}

// tamper wraps the server so that it alters or cuts the layer's bytes, as
// a faulty network or a malicious middle would.
func tamper(mode string) func(*Server) http.Handler {
	return func(s *Server) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.Contains(r.URL.Path, "/blobs/") {
				s.ServeHTTP(w, r)
				return
			}
			rec := &recorder{header: http.Header{}}
			s.ServeHTTP(rec, r)
			body := rec.body
			switch mode {
			case "flip":
				body[len(body)/2] ^= 0xff
			case "truncate":
				body = body[:len(body)/2]
			case "extend":
				body = append(body, "more"...)
			}
			for k, v := range rec.header {
				if k != "Content-Length" {
					w.Header()[k] = v
				}
			}
			w.WriteHeader(rec.status)
			_, _ = w.Write(body)
		})
	}
}

type recorder struct {
	header http.Header
	status int
	body   []byte
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(status int) {
	r.status = status
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	r.body = append(r.body, b...)
	return len(b), nil
}

func TestFetchDetectsAlteredStream(t *testing.T) {
	cases := []struct {
		mode    string
		wantErr error
	}{
		{mode: "flip", wantErr: ErrDigest},
		{mode: "truncate", wantErr: ErrTruncated},
		{mode: "extend", wantErr: ErrTooLong},
	}
	for _, tc := range cases {
		t.Run(tc.mode, func(t *testing.T) {
			env := startTestServer(t, tamper(tc.mode))
			src := env.source(t, env.target, targetToken, env.fps["node-a"])

			data, err := readBlob(context.Background(), src, descriptors(env.img)[3], 0)

			if !errors.Is(err, tc.wantErr) {
				t.Errorf("fetch = %d bytes, error %v; want %v", len(data), err, tc.wantErr)
			}
		})
	}
}

func TestParseRoute(t *testing.T) {
	d := digest.FromString("x")
	cases := []struct {
		path    string
		want    *route
		wantErr bool
	}{
		{path: "/v2/lpm/" + migrationUID + "/counter/blobs/" + d.String(),
			want: &route{migrationUID: migrationUID, container: "counter", kind: "blobs", digest: d}},
		{path: "/v2/lpm/" + migrationUID + "/counter/manifests/" + d.String(),
			want: &route{migrationUID: migrationUID, container: "counter", kind: "manifests", digest: d}},
		{path: "/v2/lpm/../counter/blobs/" + d.String(), wantErr: true},
		{path: "/v2/lpm/" + migrationUID + "/Counter/blobs/" + d.String(), wantErr: true},
		{path: "/v2/lpm/" + migrationUID + "/counter/tags/list", wantErr: true},
		{path: "/v2/lpm/" + migrationUID + "/counter/blobs/md5:abc", wantErr: true},
		{path: "/v2/lpm/" + migrationUID + "/counter/blobs/" + d.String() + "/x", wantErr: true},
		{path: "/v2/other/x", wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			got, err := parseRoute(tc.path)
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseRoute() error = %v, want error %v", err, tc.wantErr)
			}
			if tc.want != nil && *got != *tc.want {
				t.Errorf("parseRoute() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseDockerConfig(t *testing.T) {
	data := []byte(`{"auths":{"https://reg.example.com:5000/v2/":{"auth":"` +
		"dXNlcjpwYXNz" + `"},"other.example.com":{"username":"u","password":"p"}}}`)
	cases := []struct {
		registry string
		wantUser string
		wantPass string
		wantNil  bool
	}{
		{registry: "reg.example.com:5000", wantUser: "user", wantPass: "pass"},
		{registry: "other.example.com", wantUser: "u", wantPass: "p"},
		{registry: "missing.example.com", wantNil: true},
	}
	for _, tc := range cases {
		t.Run(tc.registry, func(t *testing.T) {
			got, err := ParseDockerConfig(data, tc.registry)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantNil {
				if got != nil {
					t.Errorf("ParseDockerConfig() = %+v, want nil", got)
				}
				return
			}
			if got == nil || got.Username != tc.wantUser || got.Password != tc.wantPass {
				t.Errorf("ParseDockerConfig() = %+v, want %s:%s", got, tc.wantUser, tc.wantPass)
			}
		})
	}
}

func ExampleFingerprint() {
	fmt.Println(len(Fingerprint([]byte("certificate"))))
	// Output: 64
}
