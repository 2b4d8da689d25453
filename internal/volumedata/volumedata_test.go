package volumedata

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// node is what the tests compare of one file system object.
type node struct {
	Mode  fs.FileMode
	UID   uint32
	GID   uint32
	Mtime int64
	Atime int64
	Link  string
	Data  string
	Inode string // the first name of the inode, for hard links
}

// snapshot reads every object below dir, keyed by its path. With withAtime
// it reads metadata with access times and no content, because reading a
// file or a symbolic link updates its access time.
func snapshot(t *testing.T, dir string, withAtime bool) map[string]node {
	t.Helper()
	out := map[string]node{}
	inodes := map[uint64]string{}
	var order []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		n := node{Mode: info.Mode(), UID: st.Uid, GID: st.Gid, Mtime: st.Mtim.Nano()}
		if withAtime {
			n.Atime = st.Atim.Nano()
		}
		if info.Mode().IsRegular() {
			if first, ok := inodes[st.Ino]; ok {
				n.Inode = first
			} else {
				inodes[st.Ino] = rel
				n.Inode = rel
			}
		}
		out[rel] = n
		order = append(order, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, rel := range order {
		if withAtime {
			// Reading would change the access times the caller compares.
			break
		}
		n := out[rel]
		p := filepath.Join(dir, rel)
		switch {
		case n.Mode&fs.ModeSymlink != 0:
			n.Link, _ = os.Readlink(p)
		case n.Mode.IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			n.Data = string(data)
		}
		out[rel] = n
	}
	return out
}

func mustWrite(t *testing.T, p string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// setTimes sets a fixed modification time and an access time an hour
// ahead of the clock: with relatime, reads do not update an access time
// later than the change time, so walking the volume keeps it.
func setTimes(t *testing.T, p string, sec int64, nsec int64) {
	t.Helper()
	atime := time.Now().Add(time.Hour).Truncate(time.Second).Add(time.Duration(nsec))
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), {Sec: sec, Nsec: nsec}}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
}

// fillVolume writes one of each kind of object the packer carries.
func fillVolume(t *testing.T, dir string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "sub", "deep"), 0o755))
	mustWrite(t, filepath.Join(dir, "plain.txt"), []byte("hello"), 0o640)
	mustWrite(t, filepath.Join(dir, "sub", "setuid"), []byte("#!/bin/sh\n"), 0o4755|fs.ModeSetuid)
	must(os.Chmod(filepath.Join(dir, "sub", "setuid"), 0o755|fs.ModeSetuid))
	mustWrite(t, filepath.Join(dir, "sub", "deep", "owned"), []byte("owned by 1234"), 0o600)
	must(os.Lchown(filepath.Join(dir, "sub", "deep", "owned"), 1234, 5678))
	must(os.Link(filepath.Join(dir, "plain.txt"), filepath.Join(dir, "sub", "hardlink")))
	must(os.Symlink("../plain.txt", filepath.Join(dir, "sub", "relative-link")))
	must(os.Symlink("/etc/passwd", filepath.Join(dir, "absolute-link")))
	must(os.Symlink("missing", filepath.Join(dir, "dangling-link")))
	must(os.Lchown(filepath.Join(dir, "dangling-link"), 42, 43))
	must(unix.Mkfifo(filepath.Join(dir, "fifo"), 0o620))
	must(os.Mkdir(filepath.Join(dir, "sticky"), 0o755))
	must(os.Chmod(filepath.Join(dir, "sticky"), 0o777|fs.ModeSticky))
	must(os.Mkdir(filepath.Join(dir, "readonly"), 0o755))
	mustWrite(t, filepath.Join(dir, "readonly", "inside"), []byte("x"), 0o444)
	must(os.Chmod(filepath.Join(dir, "readonly"), 0o555))
	must(os.Chmod(dir, 0o1777|fs.ModeSticky))
	must(os.Chmod(dir, 0o777|fs.ModeSticky))

	// Times last, deepest first, so no later write changes them.
	var paths []string
	_ = filepath.WalkDir(dir, func(p string, _ fs.DirEntry, _ error) error {
		paths = append(paths, p)
		return nil
	})
	for i := len(paths) - 1; i >= 0; i-- {
		setTimes(t, paths[i], 1_600_000_000+int64(i), 123_456_789)
	}
}

func packExtract(t *testing.T, volumes []Volume, dirs map[string]string) (Stats, Stats) {
	t.Helper()
	var buf bytes.Buffer
	packed, err := Pack(context.Background(), &buf, volumes, Limits{})
	if err != nil {
		t.Fatalf("Pack: %v", err)
	}
	extracted, err := Extract(bytes.NewReader(buf.Bytes()), dirs)
	if err != nil {
		t.Fatalf("Extract: %v", err)
	}
	return packed, extracted
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("restoring owners of other users needs root")
	}
}

func TestRoundTripKeepsAttributes(t *testing.T) {
	requireRoot(t)
	src, dst := t.TempDir(), t.TempDir()
	fillVolume(t, src)
	times := snapshot(t, src, true)

	packed, extracted := packExtract(t, []Volume{{Name: "data", Dir: src}}, map[string]string{"data": dst})

	if diff := cmp.Diff(times, snapshot(t, dst, true)); diff != "" {
		t.Errorf("restored metadata differs (-packed +restored):\n%s", diff)
	}
	if diff := cmp.Diff(snapshot(t, src, false), snapshot(t, dst, false)); diff != "" {
		t.Errorf("restored contents differ (-packed +restored):\n%s", diff)
	}
	if diff := cmp.Diff(packed, extracted); diff != "" {
		t.Errorf("Extract stats differ from Pack stats (-pack +extract):\n%s", diff)
	}
	if want := int64(len("hello") + len("#!/bin/sh\n") + len("owned by 1234") + 1); packed.DataBytes != want {
		t.Errorf("DataBytes = %d, want %d (a hard link counts once)", packed.DataBytes, want)
	}
}

func TestRoundTripSeveralVolumes(t *testing.T) {
	requireRoot(t)
	a, b := t.TempDir(), t.TempDir()
	mustWrite(t, filepath.Join(a, "f"), []byte("in a"), 0o644)
	mustWrite(t, filepath.Join(b, "f"), []byte("in b"), 0o644)
	outA, outB := t.TempDir(), t.TempDir()

	packed, _ := packExtract(t, []Volume{{Name: "vol-b", Dir: b}, {Name: "vol-a", Dir: a}},
		map[string]string{"vol-a": outA, "vol-b": outB})

	for dir, want := range map[string]string{outA: "in a", outB: "in b"} {
		got, err := os.ReadFile(filepath.Join(dir, "f"))
		if err != nil || string(got) != want {
			t.Errorf("%s/f = %q, %v; want %q", dir, got, err, want)
		}
	}
	wantVolumes := map[string]VolumeStats{"vol-a": {DataBytes: 4, Entries: 1}, "vol-b": {DataBytes: 4, Entries: 1}}
	if diff := cmp.Diff(wantVolumes, packed.Volumes); diff != "" {
		t.Errorf("per-volume stats (-want +got):\n%s", diff)
	}
}

func TestRoundTripSparseAndLargeFiles(t *testing.T) {
	requireRoot(t)
	src, dst := t.TempDir(), t.TempDir()
	sparse, err := os.Create(filepath.Join(src, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sparse.WriteAt([]byte("head"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := sparse.WriteAt([]byte("tail"), 64<<20); err != nil {
		t.Fatal(err)
	}
	_ = sparse.Close()
	large := make([]byte, 9<<20+17)
	if _, err := rand.Read(large); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(src, "large"), large, 0o644)

	packExtract(t, []Volume{{Name: "v", Dir: src}}, map[string]string{"v": dst})

	got, err := os.ReadFile(filepath.Join(dst, "large"))
	if err != nil || !bytes.Equal(got, large) {
		t.Errorf("large file differs after the round trip (err %v)", err)
	}
	info, err := os.Stat(filepath.Join(dst, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(64<<20 + 4); info.Size() != want {
		t.Errorf("sparse file size = %d, want %d", info.Size(), want)
	}
	if used := info.Sys().(*syscall.Stat_t).Blocks * 512; used > 1<<20 {
		t.Errorf("sparse file uses %d bytes on disk after the round trip, want its holes kept", used)
	}
	data, _ := os.ReadFile(filepath.Join(dst, "sparse"))
	if string(data[:4]) != "head" || string(data[64<<20:]) != "tail" || !allZero(data[4096:8192]) {
		t.Errorf("sparse file contents differ after the round trip")
	}
}

func TestPackSkipsSockets(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	ln, err := net.Listen("unix", filepath.Join(src, "app.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	mustWrite(t, filepath.Join(src, "f"), []byte("x"), 0o644)

	packed, _ := packExtract(t, []Volume{{Name: "v", Dir: src}}, map[string]string{"v": dst})

	if packed.SkippedSockets != 1 {
		t.Errorf("SkippedSockets = %d, want 1", packed.SkippedSockets)
	}
	if _, err := os.Lstat(filepath.Join(dst, "app.sock")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket restored (err %v); the restored process binds it again", err)
	}
}

func TestPackRejectsDeviceNodes(t *testing.T) {
	requireRoot(t)
	src := t.TempDir()
	if err := unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Skipf("cannot create a device node here: %v", err)
	}
	volumes := []Volume{{Name: "v", Dir: src}}

	if _, err := Measure(context.Background(), volumes, Limits{}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Measure error = %v, want ErrUnsupported", err)
	}
	if _, err := Pack(context.Background(), &bytes.Buffer{}, volumes, Limits{}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Pack error = %v, want ErrUnsupported", err)
	}
}

func TestSizeLimit(t *testing.T) {
	src := t.TempDir()
	mustWrite(t, filepath.Join(src, "a"), make([]byte, 600), 0o644)
	mustWrite(t, filepath.Join(src, "b"), make([]byte, 600), 0o644)
	if err := os.Link(filepath.Join(src, "a"), filepath.Join(src, "a-link")); err != nil {
		t.Fatal(err)
	}
	volumes := []Volume{{Name: "v", Dir: src}}

	for _, tc := range []struct {
		limit   int64
		wantErr bool
	}{
		{limit: 1199, wantErr: true},
		{limit: 1200, wantErr: false},
		{limit: 0, wantErr: false},
	} {
		stats, err := Measure(context.Background(), volumes, Limits{MaxDataBytes: tc.limit})
		if got := errors.Is(err, ErrTooLarge); got != tc.wantErr {
			t.Errorf("Measure with limit %d: error %v, want ErrTooLarge %t", tc.limit, err, tc.wantErr)
		}
		if !tc.wantErr && stats.DataBytes != 1200 {
			t.Errorf("Measure with limit %d: DataBytes = %d, want 1200", tc.limit, stats.DataBytes)
		}
		_, err = Pack(context.Background(), &bytes.Buffer{}, volumes, Limits{MaxDataBytes: tc.limit})
		if got := errors.Is(err, ErrTooLarge); got != tc.wantErr {
			t.Errorf("Pack with limit %d: error %v, want ErrTooLarge %t", tc.limit, err, tc.wantErr)
		}
	}
}

func TestExtractReplacesEarlierRun(t *testing.T) {
	requireRoot(t)
	src, dst := t.TempDir(), t.TempDir()
	fillVolume(t, src)
	var buf bytes.Buffer
	if _, err := Pack(context.Background(), &buf, []Volume{{Name: "v", Dir: src}}, Limits{}); err != nil {
		t.Fatal(err)
	}
	// A symbolic link where a file goes must be replaced, not followed.
	outside := t.TempDir()
	if err := os.Symlink(filepath.Join(outside, "victim"), filepath.Join(dst, "plain.txt")); err != nil {
		t.Fatal(err)
	}

	for run := 1; run <= 2; run++ {
		if _, err := Extract(bytes.NewReader(buf.Bytes()), map[string]string{"v": dst}); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
	}

	if diff := cmp.Diff(snapshot(t, src, false), snapshot(t, dst, false)); diff != "" {
		t.Errorf("volume after two runs differs (-packed +restored):\n%s", diff)
	}
	if _, err := os.Lstat(filepath.Join(outside, "victim")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Extract wrote through a symbolic link to outside the volume")
	}
}

// tarEntry is an entry of a crafted stream.
type tarEntry struct {
	hdr  tar.Header
	data string
}

func craft(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := e.hdr
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(e.data))
		}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestExtractRejectsEscapes(t *testing.T) {
	file := func(name string) tarEntry {
		return tarEntry{hdr: tar.Header{Name: name, Typeflag: tar.TypeReg}, data: "pwned"}
	}
	dir := func(name string) tarEntry {
		return tarEntry{hdr: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755}}
	}
	for _, tc := range []struct {
		name    string
		entries []tarEntry
	}{
		{name: "dot-dot", entries: []tarEntry{dir("v/"), file("v/../escaped")}},
		{name: "dot-dot inside", entries: []tarEntry{file("v/a/../../escaped")}},
		{name: "absolute", entries: []tarEntry{file("/escaped")}},
		{name: "unknown volume", entries: []tarEntry{file("other/escaped")}},
		{name: "bare volume file", entries: []tarEntry{file("v")}},
		{name: "hard link to another volume", entries: []tarEntry{
			{hdr: tar.Header{Name: "v/link", Typeflag: tar.TypeLink, Linkname: "w/secret"}}}},
		{name: "hard link out", entries: []tarEntry{
			{hdr: tar.Header{Name: "v/link", Typeflag: tar.TypeLink, Linkname: "v/../../etc/passwd"}}}},
		{name: "file through a symbolic link", entries: []tarEntry{
			{hdr: tar.Header{Name: "v/a", Typeflag: tar.TypeSymlink, Linkname: "OUTSIDE"}},
			file("v/a/escaped")}},
		{name: "device node", entries: []tarEntry{
			{hdr: tar.Header{Name: "v/null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			dst := filepath.Join(parent, "v")
			outside := filepath.Join(parent, "outside")
			for _, d := range []string{dst, outside} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for i := range tc.entries {
				tc.entries[i].hdr.Linkname = strings.ReplaceAll(tc.entries[i].hdr.Linkname, "OUTSIDE", outside)
			}

			_, err := Extract(bytes.NewReader(craft(t, tc.entries...)), map[string]string{"v": dst})

			if err == nil {
				t.Fatal("Extract accepted the stream")
			}
			for _, p := range []string{filepath.Join(parent, "escaped"), filepath.Join(outside, "escaped")} {
				if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("Extract wrote %s outside the volume", p)
				}
			}
		})
	}
}

func TestExtractRejectsTruncatedStream(t *testing.T) {
	data := craft(t, tarEntry{hdr: tar.Header{Name: "v/f", Typeflag: tar.TypeReg}, data: strings.Repeat("x", 4000)})

	_, err := Extract(bytes.NewReader(data[:1024]), map[string]string{"v": t.TempDir()})

	if !errors.Is(err, ErrInvalidStream) {
		t.Errorf("Extract error = %v, want ErrInvalidStream", err)
	}
}

func TestPackEmptyVolume(t *testing.T) {
	packed, _ := packExtract(t, []Volume{{Name: "v", Dir: t.TempDir()}}, map[string]string{"v": t.TempDir()})

	if packed.Entries != 0 || packed.DataBytes != 0 {
		t.Errorf("empty volume: Entries %d, DataBytes %d; want 0 and 0", packed.Entries, packed.DataBytes)
	}
}

func TestPackStopsWhenCancelled(t *testing.T) {
	src := t.TempDir()
	mustWrite(t, filepath.Join(src, "f"), []byte("x"), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	_, err := Pack(ctx, &bytes.Buffer{}, []Volume{{Name: "v", Dir: src}}, Limits{})

	if !errors.Is(err, context.Canceled) {
		t.Errorf("Pack error = %v, want context.Canceled", err)
	}
}

func TestPodVolumeDir(t *testing.T) {
	got := PodVolumeDir("/var/lib/kubelet/pods", "0b1c", "cache")
	if want := "/var/lib/kubelet/pods/0b1c/volumes/kubernetes.io~empty-dir/cache"; got != want {
		t.Errorf("PodVolumeDir = %q, want %q", got, want)
	}
}
