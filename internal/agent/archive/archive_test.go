package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/checkpoint-restore/go-criu/v8/stats"
	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"

	"github.com/lpm-dev/lpm/internal/agent/internal/archivetest"
)

type entry struct {
	hdr  tar.Header
	body []byte
}

func file(name, body string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o600, Size: int64(len(body))},
		body: []byte(body)}
}

func dir(name string) entry {
	return entry{hdr: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o700}}
}

func statsDump(t testing.TB, freezing, frozen uint32, pages uint64) []byte {
	zero32, zero64 := uint32(0), uint64(0)
	entry := &stats.StatsEntry{Dump: &stats.DumpStatsEntry{
		FreezingTime: &freezing, FrozenTime: &frozen, MemdumpTime: &zero32, MemwriteTime: &zero32,
		PagesScanned: &pages, PagesSkippedParent: &zero64, PagesWritten: &pages, PagesLazy: &zero64,
	}}
	payload, err := entry.MarshalVT()
	if err != nil {
		t.Fatalf("failed to encode stats: %v", err)
	}
	out := make([]byte, stats.PayloadOffset, stats.PayloadOffset+len(payload))
	binary.LittleEndian.PutUint32(out[stats.PrimaryMagicOffset:], stats.ImgServiceMagic)
	binary.LittleEndian.PutUint32(out[stats.SecondaryMagicOffset:], stats.StatsMagic)
	binary.LittleEndian.PutUint32(out[stats.SizeOffset:], uint32(len(payload)))
	return append(out, payload...)
}

func rootfsDiff(t testing.TB, entries ...entry) string {
	return string(writeTar(t, entries))
}

// gzipped compresses data the way containerd writes rootfs-diff.tar.
func gzipped(t testing.TB, data string) string {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write([]byte(data)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// validEntries are the files of a small but complete containerd archive.
func validEntries(t testing.TB) []entry {
	return []entry{
		file("config.dump", `{"id":"abc","name":"counter","rootfsImage":"docker.io/library/counter:v1",`+
			`"rootfsImageRef":"sha256:ee2c","rootfsImageName":"docker.io/library/counter:v1",`+
			`"runtime":"runc","checkpointedTime":"2026-12-04T15:17:44Z"}`),
		file("spec.dump", `{"ociVersion":"1.2.0","annotations":{"io.kubernetes.cri.container-name":"counter"}}`),
		file("status.dump", `{"metadata":{"name":"counter"}}`),
		file("status", `{"Pid":4242}`),
		dir("checkpoint/"),
		file("checkpoint/inventory.img", "inventory"),
		file("checkpoint/pstree.img", string(archivetest.Pstree(t, 1, 7))),
		file("checkpoint/core-1.img", "core"),
		file("checkpoint/mm-1.img", "mm"),
		file("checkpoint/pagemap-1.img", "pagemap"),
		file("checkpoint/ids-1.img", "ids"),
		file("checkpoint/core-7.img", "core"),
		file("checkpoint/mm-7.img", "mm"),
		file("checkpoint/pagemap-7.img", "pagemap"),
		file("checkpoint/ids-7.img", "ids"),
		file("checkpoint/pages-1.img", strings.Repeat("p", 4096)),
		{hdr: tar.Header{Name: "stats-dump", Typeflag: tar.TypeReg, Mode: 0o600}, body: statsDump(t, 1500, 9000, 170)},
		file("rootfs-diff.tar", rootfsDiff(t, file("tmp/state", "1"),
			entry{hdr: tar.Header{Name: "etc/link", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}})),
		file("container.log", "count=1\n"),
	}
}

func writeTar(t testing.TB, entries []entry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := e.hdr
		if hdr.Typeflag == tar.TypeReg && hdr.Size == 0 {
			hdr.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatalf("failed to write header %q: %v", hdr.Name, err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatalf("failed to write body %q: %v", hdr.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("failed to close tar: %v", err)
	}
	return buf.Bytes()
}

func replace(entries []entry, name string, with ...entry) []entry {
	var out []entry
	for _, e := range entries {
		if e.hdr.Name == name {
			out = append(out, with...)
			continue
		}
		out = append(out, e)
	}
	return out
}

func TestInspectValid(t *testing.T) {
	data := writeTar(t, validEntries(t))

	info, err := Inspect(bytes.NewReader(data), Limits{})
	if err != nil {
		t.Fatalf("Inspect() error = %v", err)
	}

	sum := sha256.Sum256(data)
	if want := digest.NewDigestFromBytes(digest.SHA256, sum[:]); info.Digest != want {
		t.Errorf("Digest = %s, want %s", info.Digest, want)
	}
	if info.Size != int64(len(data)) {
		t.Errorf("Size = %d, want %d", info.Size, len(data))
	}
	if info.Config.Name != "counter" || info.Config.RootfsImageRef != "sha256:ee2c" {
		t.Errorf("Config = %+v, want name counter and base image sha256:ee2c", info.Config)
	}
	if got := info.SpecAnnotations["io.kubernetes.cri.container-name"]; got != "counter" {
		t.Errorf("SpecAnnotations container name = %q, want counter", got)
	}
	wantStats := &DumpStats{FreezingTime: 1500 * time.Microsecond, FrozenTime: 9 * time.Millisecond,
		PagesScanned: 170, PagesWritten: 170}
	if diff := cmp.Diff(wantStats, info.Stats); diff != "" {
		t.Errorf("Stats mismatch (-want +got):\n%s", diff)
	}
	if got := info.Files["checkpoint/pages-1.img"]; got != 4096 {
		t.Errorf("Files[pages-1.img] = %d, want 4096", got)
	}
}

func TestInspectGzippedRootfsDiff(t *testing.T) {
	entries := replace(validEntries(t), "rootfs-diff.tar", file("rootfs-diff.tar",
		gzipped(t, rootfsDiff(t, file("etc/hostname", "web")))))

	if _, err := Inspect(bytes.NewReader(writeTar(t, entries)), Limits{}); err != nil {
		t.Errorf("Inspect() error = %v", err)
	}
}

func TestInspectRejects(t *testing.T) {
	valid := validEntries(t)
	validData := writeTar(t, valid)
	lyingSize := writeTar(t, append(valid, file("extra", "0123456789")))
	// The last entry's 10-byte body sits in the block before the two end
	// blocks: cut inside the body, and right after the entry.
	cutInBody := lyingSize[:len(lyingSize)-2*blockSize-blockSize+5]
	cutAfterEntry := lyingSize[:len(lyingSize)-2*blockSize]

	cases := []struct {
		name       string
		data       []byte
		limits     Limits
		wantReason string
	}{
		{
			name:       "parent escape",
			data:       writeTar(t, append(valid, file("../../etc/cron.d/x", "x"))),
			wantReason: "path leaves the archive root",
		},
		{
			name:       "nested parent escape",
			data:       writeTar(t, append(valid, file("checkpoint/../../x", "x"))),
			wantReason: "path leaves the archive root",
		},
		{
			name:       "absolute path",
			data:       writeTar(t, append(valid, file("/etc/passwd", "x"))),
			wantReason: "absolute path",
		},
		{
			name: "symlink",
			data: writeTar(t, append(valid, entry{hdr: tar.Header{Name: "checkpoint/link",
				Typeflag: tar.TypeSymlink, Linkname: "/etc/shadow"}})),
			wantReason: `entry type "2" is not a regular file or directory`,
		},
		{
			name: "hard link",
			data: writeTar(t, append(valid, entry{hdr: tar.Header{Name: "hard",
				Typeflag: tar.TypeLink, Linkname: "config.dump"}})),
			wantReason: `entry type "1" is not a regular file or directory`,
		},
		{
			name: "device",
			data: writeTar(t, append(valid, entry{hdr: tar.Header{Name: "dev", Typeflag: tar.TypeChar,
				Devmajor: 1, Devminor: 3}})),
			wantReason: `entry type "3" is not a regular file or directory`,
		},
		{
			name:       "duplicate entry",
			data:       writeTar(t, append(valid, file("./config.dump", "{}"))),
			wantReason: "duplicate entry",
		},
		{
			name:       "stream cut inside a body",
			data:       cutInBody,
			wantReason: "truncated or malformed tar",
		},
		{
			name:       "stream cut between entries",
			data:       cutAfterEntry,
			wantReason: "end-of-archive marker is missing",
		},
		{
			name:       "trailing data",
			data:       append(append([]byte{}, validData...), []byte("smuggled")...),
			wantReason: "non-zero data after the end of the archive",
		},
		{
			name:       "missing inventory",
			data:       writeTar(t, replace(valid, "checkpoint/inventory.img")),
			wantReason: "missing checkpoint/inventory.img",
		},
		{
			name:       "missing pages",
			data:       writeTar(t, replace(valid, "checkpoint/pages-1.img")),
			wantReason: "missing checkpoint/pages-*.img",
		},
		{
			name:       "missing status dump",
			data:       writeTar(t, replace(valid, "status.dump")),
			wantReason: "missing status.dump",
		},
		{
			name:       "missing core image of a child",
			data:       writeTar(t, replace(valid, "checkpoint/core-7.img")),
			wantReason: "missing: checkpoint/core-7.img",
		},
		{
			name:       "missing memory map of the root",
			data:       writeTar(t, replace(valid, "checkpoint/mm-1.img")),
			wantReason: "missing: checkpoint/mm-1.img",
		},
		{
			name:       "process tree not an image",
			data:       writeTar(t, replace(valid, "checkpoint/pstree.img", file("checkpoint/pstree.img", "pstree"))),
			wantReason: "is not the process tree's",
		},
		{
			name: "process tree entry truncated",
			data: writeTar(t, replace(valid, "checkpoint/pstree.img", file("checkpoint/pstree.img",
				string(archivetest.Pstree(t, 1)[:12])))),
			wantReason: "entry 1 claims",
		},
		{
			name:       "config without name",
			data:       writeTar(t, replace(valid, "config.dump", file("config.dump", `{"rootfsImageRef":"x"}`))),
			wantReason: "no container name",
		},
		{
			name:       "config not JSON",
			data:       writeTar(t, replace(valid, "config.dump", file("config.dump", `{"name":`))),
			wantReason: "invalid JSON",
		},
		{
			name: "stats size lies",
			data: writeTar(t, replace(valid, "stats-dump", entry{
				hdr:  tar.Header{Name: "stats-dump", Typeflag: tar.TypeReg},
				body: append(statsDump(t, 1, 1, 1)[:8], 0xff, 0xff, 0, 0)})),
			wantReason: "exceeds the file",
		},
		{
			name: "stats too short",
			data: writeTar(t, replace(valid, "stats-dump", entry{
				hdr: tar.Header{Name: "stats-dump", Typeflag: tar.TypeReg}, body: []byte{0x40}})),
			wantReason: "shorter than its header",
		},
		{
			name: "rootfs diff escapes",
			data: writeTar(t, replace(valid, "rootfs-diff.tar",
				file("rootfs-diff.tar", rootfsDiff(t, file("../../host", "x"))))),
			wantReason: "path leaves the archive root",
		},
		{
			name: "rootfs diff hard link escapes",
			data: writeTar(t, replace(valid, "rootfs-diff.tar",
				file("rootfs-diff.tar", rootfsDiff(t, entry{hdr: tar.Header{Name: "x", Typeflag: tar.TypeLink,
					Linkname: "../../../etc/shadow"}})))),
			wantReason: "path leaves the archive root",
		},
		{
			name: "gzipped rootfs diff escapes",
			data: writeTar(t, replace(valid, "rootfs-diff.tar",
				file("rootfs-diff.tar", gzipped(t, rootfsDiff(t, file("../../host", "x")))))),
			wantReason: "path leaves the archive root",
		},
		{
			name: "gzipped rootfs diff truncated",
			data: writeTar(t, replace(valid, "rootfs-diff.tar",
				file("rootfs-diff.tar", gzipped(t, rootfsDiff(t, file("a", "x")))[:30]))),
			wantReason: "rootfs-diff.tar",
		},
		{
			name: "rootfs diff device",
			data: writeTar(t, replace(valid, "rootfs-diff.tar",
				file("rootfs-diff.tar", rootfsDiff(t, entry{hdr: tar.Header{Name: "dev/sda",
					Typeflag: tar.TypeBlock}})))),
			wantReason: "unsupported type",
		},
		{
			name:       "archive over size limit",
			data:       validData,
			limits:     Limits{MaxBytes: 4096},
			wantReason: "archive is larger than 4096 bytes",
		},
		{
			name:       "too many entries",
			data:       validData,
			limits:     Limits{MaxEntries: 3},
			wantReason: "more than 3 entries",
		},
		{
			name:       "metadata over limit",
			data:       validData,
			limits:     Limits{MaxMetadataBytes: 16},
			wantReason: "exceeds the metadata limit",
		},
		{
			name:       "empty input",
			data:       nil,
			wantReason: "end-of-archive marker is missing",
		},
		{
			name:       "empty archive",
			data:       writeTar(t, nil),
			wantReason: "missing config.dump",
		},
		{
			name:       "not a tar",
			data:       bytes.Repeat([]byte("garbage!"), 200),
			wantReason: "malformed tar",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			info, err := Inspect(bytes.NewReader(tc.data), tc.limits)
			if err == nil {
				t.Fatalf("Inspect() = %+v, want an error containing %q", info, tc.wantReason)
			}
			var archiveErr *Error
			if !errors.As(err, &archiveErr) {
				t.Fatalf("Inspect() error = %v (%T), want *archive.Error", err, err)
			}
			if !strings.Contains(err.Error(), tc.wantReason) {
				t.Errorf("Inspect() error = %q, want it to contain %q", err, tc.wantReason)
			}
		})
	}
}

type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }

func TestInspectReadFailure(t *testing.T) {
	data := writeTar(t, validEntries(t))
	readErr := errors.New("disk on fire")
	r := io.MultiReader(bytes.NewReader(data[:2048]), failingReader{err: readErr})

	_, err := Inspect(r, Limits{})

	if !errors.Is(err, readErr) {
		t.Errorf("Inspect() error = %v, want it to wrap %v", err, readErr)
	}
	var archiveErr *Error
	if errors.As(err, &archiveErr) {
		t.Errorf("Inspect() error = %v is an *archive.Error, want a read failure", err)
	}
}

func ExampleInspect() {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "../escape", Typeflag: tar.TypeReg})
	_ = tw.Close()

	_, err := Inspect(&buf, Limits{})
	fmt.Println(err)
	// Output: invalid checkpoint archive: entry "../escape": path leaves the archive root
}
