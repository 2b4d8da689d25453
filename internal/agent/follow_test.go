package agent

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lpm-dev/lpm/internal/agent/internal/archivetest"
)

// writeSlowly copies the file at from to path in pieces with pauses, as
// the runtime writes an archive during the kubelet's call.
func writeSlowly(t *testing.T, from, path string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Error(err)
		return
	}
	defer func() { _ = in.Close() }()
	out, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		t.Error(err)
		return
	}
	defer func() { _ = out.Close() }()
	buf := make([]byte, 64<<10)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			if _, werr := out.Write(buf[:n]); werr != nil {
				t.Error(werr)
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Error(err)
			return
		}
	}
}

func TestFollowArchive(t *testing.T) {
	source := filepath.Join(t.TempDir(), "source.tar")
	archivetest.WriteFile(t, source, archivetest.Options{Container: "app", PagesBytes: 3 << 20})
	want, err := inspectFile(source)
	if err != nil {
		t.Fatal(err)
	}
	const name = "checkpoint-web_default-app-2026-12-04T10:00:01Z.tar"

	cases := []struct {
		name string
		// returned is the archive name the kubelet returns.
		returned string
		// write is the file the runtime writes during the call.
		write    string
		wantInfo bool
	}{
		{name: "archive written during the call", returned: name, write: name, wantInfo: true},
		{name: "kubelet returns another archive", returned: "checkpoint-web_default-app-other.tar", write: name},
		{name: "archive of another container", returned: name,
			write: "checkpoint-web_default-sidecar-2026-12-04T10:00:01Z.tar"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			// An archive of an earlier checkpoint of the same container.
			archivetest.WriteFile(t, filepath.Join(dir, "checkpoint-web_default-app-2026-12-04T09:00:00Z.tar"),
				archivetest.Options{Container: "app"})
			f := followArchive(context.Background(), dir, "web", "default", "app")
			time.Sleep(20 * time.Millisecond)
			writeSlowly(t, source, filepath.Join(dir, tc.write))
			if tc.returned != tc.write {
				archivetest.WriteFile(t, filepath.Join(dir, tc.returned), archivetest.Options{Container: "app"})
			}

			info, ok := f.finish(filepath.Join(dir, tc.returned))
			if ok != tc.wantInfo {
				t.Fatalf("finish() ok = %v, want %v", ok, tc.wantInfo)
			}
			if !ok {
				return
			}
			if info.Digest != want.Digest || info.Size != want.Size || info.Config.Name != want.Config.Name {
				t.Errorf("followed inspection = %s, %d bytes, %q; want %s, %d bytes, %q", info.Digest, info.Size,
					info.Config.Name, want.Digest, want.Size, want.Config.Name)
			}
		})
	}
}

// TestFollowArchiveStop checks that a follower of a call that failed
// before any archive appeared, or while one was half written, stops.
func TestFollowArchiveStop(t *testing.T) {
	dir := t.TempDir()
	f := followArchive(context.Background(), dir, "web", "default", "app")
	requireStops(t, f, "a follower that found no archive")

	f = followArchive(context.Background(), dir, "web", "default", "app")
	half, err := os.Create(filepath.Join(dir, "checkpoint-web_default-app-2026-12-04T10:00:01Z.tar"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = half.Close() }()
	if _, err := half.Write(make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	requireStops(t, f, "a follower of a half-written archive")
}

// requireStops fails the test unless f.stop() returns within 5 s.
func requireStops(t *testing.T, f *archiveFollower, follower string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		f.stop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("stop() of %s did not return", follower)
	}
}
