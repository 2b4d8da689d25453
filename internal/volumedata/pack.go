package volumedata

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// ErrTooLarge reports volumes whose regular files hold more bytes than the
// limit allows.
var ErrTooLarge = errors.New("emptyDir volumes exceed the size limit")

// ErrUnsupported reports an entry that cannot be carried, such as a device
// node.
var ErrUnsupported = errors.New("emptyDir volume holds an entry that cannot be carried")

// Limits bound what Pack and Measure accept.
type Limits struct {
	// MaxDataBytes bounds the regular files' contents over all volumes;
	// zero means no bound.
	MaxDataBytes int64
}

// entry is one file system object found by the walk.
type entry struct {
	volume string
	// name is the tar name: the volume's name, then the path inside it.
	name string
	path string
	info fs.FileInfo
	stat *syscall.Stat_t
}

// walk calls fn for every entry of each volume, in lexical order, the
// volume's own directory first. It does not follow symbolic links and does
// not descend into other file systems mounted below a volume.
func walk(ctx context.Context, volumes []Volume, fn func(e entry) error) error {
	for _, v := range sortedVolumes(volumes) {
		if !validVolumeName(v.Name) {
			return fmt.Errorf("invalid volume name %q", v.Name)
		}
		rootInfo, err := os.Lstat(v.Dir)
		if err != nil {
			return fmt.Errorf("failed to read volume %s: %w", v.Name, err)
		}
		if !rootInfo.IsDir() {
			return fmt.Errorf("volume %s: %s is not a directory", v.Name, v.Dir)
		}
		rootDev := rootInfo.Sys().(*syscall.Stat_t).Dev
		err = filepath.WalkDir(v.Dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return fmt.Errorf("failed to read volume %s: %w", v.Name, err)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return fmt.Errorf("failed to read %s: %w", p, err)
			}
			st, ok := info.Sys().(*syscall.Stat_t)
			if !ok {
				return fmt.Errorf("failed to read the owner of %s", p)
			}
			rel, err := filepath.Rel(v.Dir, p)
			if err != nil {
				return err
			}
			if info.IsDir() && rel != "." && st.Dev != rootDev {
				return fmt.Errorf("%w: %s in volume %s is a mount point of another file system", ErrUnsupported,
					rel, v.Name)
			}
			name := v.Name + "/"
			if rel != "." {
				name = path.Join(v.Name, filepath.ToSlash(rel))
			}
			return fn(entry{volume: v.Name, name: name, path: p, info: info, stat: st})
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func sortedVolumes(volumes []Volume) []Volume {
	out := slices.Clone(volumes)
	slices.SortFunc(out, func(a, b Volume) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}

// validVolumeName accepts the names the API server accepts for a volume:
// DNS labels, which never contain "/" and are never "." or "..".
func validVolumeName(name string) bool {
	if name == "" || len(name) > 63 {
		return false
	}
	for _, c := range name {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// checkType returns ErrUnsupported for an entry that cannot be carried and
// reports whether the entry is a socket, which is skipped.
func checkType(e entry) (skip bool, err error) {
	switch m := e.info.Mode(); {
	case m&fs.ModeSocket != 0:
		return true, nil
	case m&fs.ModeDevice != 0, m&fs.ModeCharDevice != 0:
		return false, fmt.Errorf("%w: %s is a device node", ErrUnsupported, e.name)
	case m&fs.ModeIrregular != 0:
		return false, fmt.Errorf("%w: %s has an unknown file type", ErrUnsupported, e.name)
	}
	return false, nil
}

// Measure walks the volumes without reading file contents and returns
// their figures, or ErrTooLarge or ErrUnsupported. The source agent runs
// it before the cut, so that a pod whose volumes cannot move is rejected
// while it still runs.
func Measure(ctx context.Context, volumes []Volume, limits Limits) (Stats, error) {
	var stats Stats
	seen := map[fileID]bool{}
	err := walk(ctx, volumes, func(e entry) error {
		skip, err := checkType(e)
		if err != nil || skip {
			if skip {
				stats.SkippedSockets++
			}
			return err
		}
		var size, entries int64
		if e.info.Mode().IsRegular() {
			id := fileID{dev: e.stat.Dev, ino: e.stat.Ino}
			if !seen[id] {
				size = e.info.Size()
			}
			seen[id] = true
		}
		if e.name != e.volume+"/" {
			entries = 1
		}
		stats.add(e.volume, size, entries)
		if limits.MaxDataBytes > 0 && stats.DataBytes > limits.MaxDataBytes {
			return fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limits.MaxDataBytes)
		}
		return nil
	})
	return stats, err
}

// fileID identifies an inode, to find hard links.
type fileID struct {
	dev, ino uint64
}

// Pack writes the volumes as one tar stream to w and returns what it
// wrote. It stops with ErrTooLarge as soon as the contents exceed the
// limit. The volumes must not change while Pack reads them: a file whose
// size changes fails the stream.
func Pack(ctx context.Context, w io.Writer, volumes []Volume, limits Limits) (Stats, error) {
	var stats Stats
	tw := tar.NewWriter(w)
	links := map[fileID]string{}
	buf := make([]byte, 1<<20)
	err := walk(ctx, volumes, func(e entry) error {
		skip, err := checkType(e)
		if err != nil || skip {
			if skip {
				stats.SkippedSockets++
			}
			return err
		}
		hdr, err := header(e)
		if err != nil {
			return err
		}
		id := fileID{dev: e.stat.Dev, ino: e.stat.Ino}
		if hdr.Typeflag == tar.TypeReg && e.stat.Nlink > 1 {
			if first, ok := links[id]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				links[id] = hdr.Name
			}
		}
		if hdr.Typeflag == tar.TypeReg && limits.MaxDataBytes > 0 &&
			stats.DataBytes+hdr.Size > limits.MaxDataBytes {
			return fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limits.MaxDataBytes)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("failed to write the header of %s: %w", e.name, err)
		}
		var size, entries int64
		if hdr.Typeflag == tar.TypeReg {
			if err := copyFile(ctx, tw, e, hdr.Size, buf); err != nil {
				return err
			}
			size = hdr.Size
		}
		if e.name != e.volume+"/" {
			entries = 1
		}
		stats.add(e.volume, size, entries)
		return nil
	})
	if err != nil {
		return stats, err
	}
	if err := tw.Close(); err != nil {
		return stats, fmt.Errorf("failed to finish the volume data stream: %w", err)
	}
	return stats, nil
}

// header returns the tar header of e in the PAX format, which keeps
// nanosecond times, long names and large IDs.
func header(e entry) (*tar.Header, error) {
	hdr := &tar.Header{
		Name:       e.name,
		Mode:       int64(e.stat.Mode & 0o7777),
		Uid:        int(e.stat.Uid),
		Gid:        int(e.stat.Gid),
		ModTime:    time.Unix(e.stat.Mtim.Sec, e.stat.Mtim.Nsec),
		AccessTime: time.Unix(e.stat.Atim.Sec, e.stat.Atim.Nsec),
		Format:     tar.FormatPAX,
	}
	switch m := e.info.Mode(); {
	case m.IsDir():
		hdr.Typeflag = tar.TypeDir
		if e.name[len(e.name)-1] != '/' {
			hdr.Name += "/"
		}
	case m.IsRegular():
		hdr.Typeflag = tar.TypeReg
		hdr.Size = e.info.Size()
	case m&fs.ModeSymlink != 0:
		target, err := os.Readlink(e.path)
		if err != nil {
			return nil, fmt.Errorf("failed to read symbolic link %s: %w", e.name, err)
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	case m&fs.ModeNamedPipe != 0:
		hdr.Typeflag = tar.TypeFifo
	default:
		return nil, fmt.Errorf("%w: %s has file type %s", ErrUnsupported, e.name, m.Type())
	}
	return hdr, nil
}

// copyFile copies exactly size bytes of e's file into tw.
func copyFile(ctx context.Context, tw *tar.Writer, e entry, size int64, buf []byte) error {
	f, err := os.Open(e.path)
	if err != nil {
		return fmt.Errorf("failed to open %s: %w", e.name, err)
	}
	defer func() { _ = f.Close() }()
	var done int64
	for done < size {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := f.Read(buf[:min(int64(len(buf)), size-done)])
		if n > 0 {
			if _, werr := tw.Write(buf[:n]); werr != nil {
				return fmt.Errorf("failed to write %s: %w", e.name, werr)
			}
			done += int64(n)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("failed to read %s: %w", e.name, err)
		}
	}
	if done != size {
		return fmt.Errorf("file %s shrank from %d to %d bytes while it was packed", e.name, size, done)
	}
	if n, _ := f.Read(buf[:1]); n > 0 {
		return fmt.Errorf("file %s grew past %d bytes while it was packed", e.name, size)
	}
	return nil
}
