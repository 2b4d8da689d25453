// Package archive reads and validates a container checkpoint archive (the
// uncompressed tar that the kubelet's checkpoint API writes) in one pass: it
// hashes the stream, rejects entries that could escape the directory the
// runtime unpacks them into, checks that the files a restore needs are
// present, and decodes the metadata (checkpointctl's file layout) and the
// CRIU dump statistics (go-criu's stats package).
//
// Every input is treated as hostile: sizes are bounded before anything is
// read into memory, and no entry is ever written to disk here.
package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"
	"unicode/utf8"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	"github.com/opencontainers/go-digest"
)

// Limits bound what Inspect accepts. The zero value of a field selects its
// default from DefaultLimits.
type Limits struct {
	// MaxBytes is the largest archive accepted, in bytes.
	MaxBytes int64
	// MaxEntries is the largest number of tar entries accepted.
	MaxEntries int
	// MaxMetadataBytes is the largest metadata file (config.dump, spec.dump,
	// status.dump, stats-dump) read into memory, in bytes.
	MaxMetadataBytes int64
}

// DefaultLimits are the limits used for fields left zero.
var DefaultLimits = Limits{
	MaxBytes:         256 << 30,
	MaxEntries:       200_000,
	MaxMetadataBytes: 8 << 20,
}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultLimits.MaxBytes
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultLimits.MaxEntries
	}
	if l.MaxMetadataBytes <= 0 {
		l.MaxMetadataBytes = DefaultLimits.MaxMetadataBytes
	}
	return l
}

// File names inside an archive, from checkpointctl's metadata package and
// CRIU's image names.
const (
	inventoryImage = metadata.CheckpointDirectory + "/inventory.img"
	pstreeImage    = metadata.CheckpointDirectory + "/pstree.img"
	statsDumpFile  = "stats-dump"
)

// blockSize is the tar block size.
const blockSize = 512

// Info is what Inspect learned about an archive.
type Info struct {
	// Digest is the SHA-256 digest of the whole archive as read.
	Digest digest.Digest
	// Size is the number of bytes read, trailing padding included.
	Size int64
	// Entries is the number of tar entries.
	Entries int
	// Config is the runtime's config.dump: container name, base image.
	Config metadata.ContainerConfig
	// SpecAnnotations are the annotations of the OCI spec in spec.dump.
	SpecAnnotations map[string]string
	// Stats are CRIU's dump statistics, nil when the archive has none.
	Stats *DumpStats
	// Files lists the regular files of the archive by cleaned name, with
	// their sizes.
	Files map[string]int64
	// Processes lists the process IDs of CRIU's process tree (pstree.img).
	Processes []int

	pstree []byte
}

// DumpStats are the figures of CRIU's stats-dump file.
type DumpStats struct {
	FreezingTime time.Duration
	FrozenTime   time.Duration
	MemdumpTime  time.Duration
	MemwriteTime time.Duration
	PagesScanned int64
	PagesWritten int64
}

// Error is a validation failure. Every error Inspect returns for bad input
// is an *Error, so callers can tell bad archives from failed reads.
type Error struct {
	// Entry is the tar entry the failure concerns, empty for the archive
	// as a whole.
	Entry string
	// Reason says what is wrong.
	Reason string
}

func (e *Error) Error() string {
	if e.Entry == "" {
		return "invalid checkpoint archive: " + e.Reason
	}
	return fmt.Sprintf("invalid checkpoint archive: entry %q: %s", e.Entry, e.Reason)
}

func invalid(entry, format string, args ...any) *Error {
	return &Error{Entry: entry, Reason: fmt.Sprintf(format, args...)}
}

// Inspect reads the archive from r to its end, hashing every byte, and
// validates it. It returns an *Error for an archive that is malformed,
// incomplete or unsafe, and the reader's error, wrapped, when reading
// fails.
func Inspect(r io.Reader, limits Limits) (*Info, error) {
	limits = limits.withDefaults()
	hash := sha256.New()
	counted := &countingReader{r: io.TeeReader(r, hash), max: limits.MaxBytes}
	info := &Info{Files: map[string]int64{}}

	if err := readEntries(tar.NewReader(counted), counted, info, limits); err != nil {
		return nil, err
	}
	if err := checkTrailer(counted); err != nil {
		return nil, err
	}
	if err := checkRequired(info); err != nil {
		return nil, err
	}

	info.Size = counted.n
	info.Digest = digest.NewDigest(digest.SHA256, hash)
	return info, nil
}

func readEntries(tr *tar.Reader, counted *countingReader, info *Info, limits Limits) error {
	seen := map[string]bool{}
	for {
		before := counted.n
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			// archive/tar also reports a stream cut between two entries as
			// the end. A complete archive ends with two zero blocks, which
			// the reader consumes after the last entry's padding.
			if counted.n-before < 2*blockSize {
				return invalid("", "truncated tar: the end-of-archive marker is missing")
			}
			return nil
		}
		if err != nil {
			return readError(err)
		}
		info.Entries++
		if info.Entries > limits.MaxEntries {
			return invalid("", "more than %d entries", limits.MaxEntries)
		}

		name, err := cleanName(hdr.Name)
		if err != nil {
			return err
		}
		if seen[name] {
			return invalid(hdr.Name, "duplicate entry")
		}
		seen[name] = true

		if err := readEntry(tr, hdr, name, info, limits); err != nil {
			return err
		}
	}
}

func readEntry(tr *tar.Reader, hdr *tar.Header, name string, info *Info, limits Limits) error {
	switch hdr.Typeflag {
	case tar.TypeDir:
		return nil
	case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // TypeRegA still occurs in old archives.
	default:
		// The runtime unpacks only regular files and directories; a link or
		// device entry could point outside the restore directory.
		return invalid(hdr.Name, "entry type %q is not a regular file or directory", string(hdr.Typeflag))
	}
	if hdr.Size < 0 || hdr.Size > limits.MaxBytes {
		return invalid(hdr.Name, "size %d is out of range", hdr.Size)
	}
	info.Files[name] = hdr.Size

	switch name {
	case metadata.ConfigDumpFile:
		return decodeJSON(tr, hdr, limits, &info.Config)
	case metadata.SpecDumpFile:
		var spec metadata.Spec
		if err := decodeJSON(tr, hdr, limits, &spec); err != nil {
			return err
		}
		info.SpecAnnotations = spec.Annotations
		return nil
	case statsDumpFile:
		data, err := readSmall(tr, hdr, limits)
		if err != nil {
			return err
		}
		info.Stats, err = decodeStats(data)
		if err != nil {
			return invalid(hdr.Name, "%v", err)
		}
		return nil
	case metadata.RootFsDiffTar:
		return checkRootfsDiff(tr, limits)
	case pstreeImage:
		data, err := readSmall(tr, hdr, limits)
		if err != nil {
			return err
		}
		info.pstree = data
		return nil
	}

	// Reading the entry to its end makes the tar reader report a body that
	// is shorter than its header claims.
	if _, err := io.Copy(io.Discard, tr); err != nil {
		return readError(err)
	}
	return nil
}

// cleanName returns the entry name in canonical form, or an error when it
// is absolute, leaves the archive's root or is not printable.
func cleanName(name string) (string, error) {
	if name == "" || len(name) > 4096 {
		return "", invalid(name, "name length %d is out of range", len(name))
	}
	if !utf8.ValidString(name) || strings.ContainsAny(name, "\x00\\") {
		return "", invalid(name, "name contains invalid characters")
	}
	if strings.HasPrefix(name, "/") {
		return "", invalid(name, "absolute path")
	}
	for _, part := range strings.Split(strings.TrimSuffix(name, "/"), "/") {
		if part == ".." {
			return "", invalid(name, "path leaves the archive root")
		}
	}
	cleaned := path.Clean(name)
	if cleaned == "." {
		return "", invalid(name, "entry names the archive root")
	}
	return cleaned, nil
}

func readSmall(tr *tar.Reader, hdr *tar.Header, limits Limits) ([]byte, error) {
	if hdr.Size > limits.MaxMetadataBytes {
		return nil, invalid(hdr.Name, "size %d exceeds the metadata limit of %d bytes", hdr.Size,
			limits.MaxMetadataBytes)
	}
	data, err := io.ReadAll(tr)
	if err != nil {
		return nil, readError(err)
	}
	return data, nil
}

func decodeJSON(tr *tar.Reader, hdr *tar.Header, limits Limits, v any) error {
	data, err := readSmall(tr, hdr, limits)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return invalid(hdr.Name, "invalid JSON: %v", err)
	}
	return nil
}

// checkRootfsDiff walks the nested tar of the container's changed files,
// which containerd writes gzip-compressed despite its name. Links are
// legitimate there, but no name or hard link target may leave the
// container's root.
func checkRootfsDiff(r io.Reader, limits Limits) error {
	br := bufio.NewReader(r)
	var nested io.Reader = br
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return invalid(metadata.RootFsDiffTar, "invalid gzip stream: %v", err)
		}
		defer func() { _ = gz.Close() }()
		// The decompressed size is bounded like the archive itself.
		nested = &countingReader{r: gz, max: limits.MaxBytes}
	}
	tr := tar.NewReader(nested)
	for entries := 0; ; entries++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return invalid(metadata.RootFsDiffTar, "invalid nested tar: %v", err)
		}
		if entries >= limits.MaxEntries {
			return invalid(metadata.RootFsDiffTar, "more than %d entries", limits.MaxEntries)
		}
		if err := checkNestedName(hdr.Name); err != nil {
			return err
		}
		switch hdr.Typeflag {
		case tar.TypeLink:
			if err := checkNestedName(hdr.Linkname); err != nil {
				return err
			}
		// TypeRegA is deprecated but still occurs in old archives.
		case tar.TypeReg, tar.TypeRegA, tar.TypeDir, tar.TypeSymlink, //nolint:staticcheck // see above
			tar.TypeFifo, tar.TypeXGlobalHeader:
		default:
			return invalid(metadata.RootFsDiffTar, "nested entry %q has unsupported type %q", hdr.Name,
				string(hdr.Typeflag))
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return invalid(metadata.RootFsDiffTar, "nested entry %q: %v", hdr.Name, err)
		}
	}
	// The outer entry may carry padding after the nested tar's end.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return readError(err)
	}
	return nil
}

func checkNestedName(name string) error {
	trimmed := strings.TrimPrefix(name, "./")
	if _, err := cleanName(strings.TrimPrefix(trimmed, "/")); err != nil {
		var e *Error
		if errors.As(err, &e) {
			return invalid(metadata.RootFsDiffTar, "nested entry %q: %s", name, e.Reason)
		}
		return err
	}
	return nil
}

// checkTrailer reads what follows the tar end marker. Tar writers pad to a
// record size with zero bytes; anything else there is data the entries do
// not account for.
func checkTrailer(r io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if bytes.IndexFunc(buf[:n], func(c rune) bool { return c != 0 }) >= 0 {
			return invalid("", "non-zero data after the end of the archive")
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return readError(err)
		}
	}
}

// checkRequired checks that the files a restore reads are present.
func checkRequired(info *Info) error {
	var missing []string
	for _, name := range []string{
		metadata.ConfigDumpFile, metadata.SpecDumpFile, metadata.StatusDumpFile, inventoryImage, pstreeImage,
	} {
		if _, ok := info.Files[name]; !ok {
			missing = append(missing, name)
		}
	}
	if !hasPages(info.Files) {
		missing = append(missing, metadata.CheckpointDirectory+"/"+metadata.PagesPrefix+"*.img")
	}
	if len(missing) > 0 {
		return invalid("", "missing %s", strings.Join(missing, ", "))
	}
	if info.Config.Name == "" {
		return invalid(metadata.ConfigDumpFile, "no container name")
	}
	if info.Config.RootfsImageRef == "" && info.Config.RootfsImageName == "" {
		return invalid(metadata.ConfigDumpFile, "no base image")
	}
	tree, err := parsePstree(info.pstree)
	if err != nil {
		return invalid(pstreeImage, "%v", err)
	}
	return checkProcessImages(info, tree)
}

func hasPages(files map[string]int64) bool {
	prefix := metadata.CheckpointDirectory + "/" + metadata.PagesPrefix
	for name := range files {
		if strings.HasPrefix(name, prefix) && strings.HasSuffix(name, ".img") {
			return true
		}
	}
	return false
}

// readError turns a tar or read failure into an error. A body shorter than
// its header, or a stream that ends inside the tar structure, is a
// truncated or lying archive and so a validation failure.
func readError(err error) error {
	var limitErr *limitError
	switch {
	case errors.As(err, &limitErr):
		return invalid("", "%v", err)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, tar.ErrHeader),
		errors.Is(err, tar.ErrFieldTooLong), errors.Is(err, tar.ErrInsecurePath):
		return invalid("", "truncated or malformed tar: %v", err)
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	if strings.HasPrefix(err.Error(), "archive/tar:") {
		return invalid("", "malformed tar: %v", err)
	}
	return fmt.Errorf("failed to read checkpoint archive: %w", err)
}

type limitError struct{ max int64 }

func (e *limitError) Error() string { return fmt.Sprintf("archive is larger than %d bytes", e.max) }

// countingReader counts bytes and fails once more than max were read.
type countingReader struct {
	r   io.Reader
	n   int64
	max int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		return n, &limitError{max: c.max}
	}
	return n, err
}
