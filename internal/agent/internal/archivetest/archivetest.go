// Package archivetest writes synthetic checkpoint archives for tests: the
// files of a containerd checkpoint with a page image of a chosen size, so
// tests and benchmarks can build images of any size without CRIU.
package archivetest

import (
	"archive/tar"
	"encoding/binary"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/checkpoint-restore/go-criu/v8/crit/images/pstree"
	"github.com/checkpoint-restore/go-criu/v8/stats"
	"google.golang.org/protobuf/proto"
)

// Options shape the archive.
type Options struct {
	// Container is the container name in config.dump; "counter" when empty.
	Container string
	// BaseImage is the base image reference in config.dump.
	BaseImage string
	// PagesBytes is the size of checkpoint/pages-1.img; 4096 when zero.
	PagesBytes int64
}

// Write writes a complete archive to w.
func Write(tb testing.TB, w io.Writer, opts Options) {
	tb.Helper()
	if opts.Container == "" {
		opts.Container = "counter"
	}
	if opts.BaseImage == "" {
		opts.BaseImage = "docker.io/library/counter:v1"
	}
	if opts.PagesBytes == 0 {
		opts.PagesBytes = 4096
	}
	tw := tar.NewWriter(w)
	small := []struct{ name, body string }{
		{"config.dump", `{"id":"0123","name":"` + opts.Container + `","rootfsImage":"` + opts.BaseImage +
			`","rootfsImageRef":"` + opts.BaseImage + `","rootfsImageName":"` + opts.BaseImage +
			`","runtime":"runc","checkpointedTime":"2026-12-04T15:17:44Z"}`},
		{"spec.dump", `{"ociVersion":"1.2.0","annotations":{"io.kubernetes.cri.container-name":"` +
			opts.Container + `"}}`},
		{"status.dump", `{"metadata":{"name":"` + opts.Container + `"}}`},
		{"status", `{"Pid":4242}`},
		{"checkpoint/inventory.img", "inventory"},
		{"checkpoint/pstree.img", string(Pstree(tb, 1))},
		{"checkpoint/core-1.img", "core"},
		{"checkpoint/mm-1.img", "mm"},
		{"checkpoint/pagemap-1.img", "pagemap"},
		{"checkpoint/ids-1.img", "ids"},
		{"stats-dump", string(StatsDump(tb, 1500, 9000, uint64(opts.PagesBytes/4096)))},
		{"container.log", "count=1\n"},
	}
	for _, f := range small {
		writeFile(tb, tw, f.name, int64(len(f.body)), strings.NewReader(f.body))
	}
	writeFile(tb, tw, "checkpoint/pages-1.img", opts.PagesBytes, io.LimitReader(&pattern{}, opts.PagesBytes))
	if err := tw.Close(); err != nil {
		tb.Fatalf("failed to close archive: %v", err)
	}
}

// Pstree returns a CRIU process tree image (pstree.img) of single-threaded
// processes: the first is the root, the others its children.
func Pstree(tb testing.TB, pids ...uint32) []byte {
	tb.Helper()
	out := binary.LittleEndian.AppendUint32(nil, 0x54564319) // IMG_COMMON_MAGIC
	out = binary.LittleEndian.AppendUint32(out, 0x50273030)  // PSTREE_MAGIC
	for _, pid := range pids {
		ppid := uint32(0)
		if pid != pids[0] {
			ppid = pids[0]
		}
		data, err := proto.Marshal(&pstree.PstreeEntry{Pid: &pid, Ppid: &ppid, Pgid: &pids[0], Sid: &pids[0],
			Threads: []uint32{pid}})
		if err != nil {
			tb.Fatal(err)
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(len(data)))
		out = append(out, data...)
	}
	return out
}

// WriteFile writes a complete archive to a new file at path, mode 0600.
func WriteFile(tb testing.TB, path string, opts Options) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		tb.Fatalf("failed to create archive: %v", err)
	}
	Write(tb, f, opts)
	if err := f.Close(); err != nil {
		tb.Fatalf("failed to close archive: %v", err)
	}
}

func writeFile(tb testing.TB, tw *tar.Writer, name string, size int64, body io.Reader) {
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o600, Size: size}); err != nil {
		tb.Fatalf("failed to write header %q: %v", name, err)
	}
	if _, err := io.Copy(tw, body); err != nil {
		tb.Fatalf("failed to write %q: %v", name, err)
	}
}

// StatsDump returns a stats-dump image with the given figures (times in
// microseconds).
func StatsDump(tb testing.TB, freezing, frozen uint32, pages uint64) []byte {
	zero32, zero64 := uint32(0), uint64(0)
	entry := &stats.StatsEntry{Dump: &stats.DumpStatsEntry{
		FreezingTime: &freezing, FrozenTime: &frozen, MemdumpTime: &zero32, MemwriteTime: &zero32,
		PagesScanned: &pages, PagesSkippedParent: &zero64, PagesWritten: &pages, PagesLazy: &zero64,
	}}
	payload, err := entry.MarshalVT()
	if err != nil {
		tb.Fatalf("failed to encode stats: %v", err)
	}
	out := make([]byte, stats.PayloadOffset, stats.PayloadOffset+len(payload))
	binary.LittleEndian.PutUint32(out[stats.PrimaryMagicOffset:], stats.ImgServiceMagic)
	binary.LittleEndian.PutUint32(out[stats.SecondaryMagicOffset:], stats.StatsMagic)
	binary.LittleEndian.PutUint32(out[stats.SizeOffset:], uint32(len(payload)))
	return append(out, payload...)
}

// pattern is an endless stream of non-zero bytes that do not compress to
// nothing, standing in for memory pages.
type pattern struct{ n uint64 }

func (p *pattern) Read(b []byte) (int, error) {
	for i := range b {
		p.n = p.n*6364136223846793005 + 1442695040888963407
		b[i] = byte(p.n >> 56)
	}
	return len(b), nil
}
