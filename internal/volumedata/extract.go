package volumedata

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrInvalidStream reports a tar stream that Pack would not write: a name
// outside its volume, an unknown volume, a link to outside the stream.
var ErrInvalidStream = errors.New("invalid volume data stream")

// holeBlock is the size of the blocks Extract leaves as holes when they
// hold only zeros, as `cp --sparse=always` does.
const holeBlock = 4096

// Extract unpacks a stream that Pack wrote into the volumes' directories:
// dirs maps each volume's name to its directory, which must exist. Every
// path is resolved inside its volume's directory (os.Root), so no entry,
// link or symbolic link written before can make Extract write outside
// it. Existing entries of the same name are replaced, so a second run after
// a failed one gives the same result.
//
// Extract sets each entry's owner and group, then its mode, then its times,
// and a directory's only after everything inside it is written. Setting an
// owner fails unless the process may give the entry that owner: root with
// CAP_CHOWN may give any; another user only itself and its own groups.
func Extract(r io.Reader, dirs map[string]string) (Stats, error) {
	x := &extractor{roots: map[string]*os.Root{}, dirs: dirs, buf: make([]byte, 1<<20)}
	defer x.close()
	stats, err := x.run(tar.NewReader(r))
	if err != nil {
		return stats, err
	}
	return stats, x.finishDirs()
}

type extractor struct {
	dirs  map[string]string
	roots map[string]*os.Root
	// pending are the directories whose owner, mode and times are set last,
	// deepest first.
	pending []pendingDir
	buf     []byte
}

type pendingDir struct {
	root *os.Root
	rel  string
	hdr  *tar.Header
}

func (x *extractor) close() {
	for _, r := range x.roots {
		_ = r.Close()
	}
}

// root returns the opened directory of a volume.
func (x *extractor) root(volume string) (*os.Root, error) {
	if r, ok := x.roots[volume]; ok {
		return r, nil
	}
	dir, ok := x.dirs[volume]
	if !ok {
		return nil, fmt.Errorf("%w: volume %q is not mounted", ErrInvalidStream, volume)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("failed to open volume %s at %s: %w", volume, dir, err)
	}
	x.roots[volume] = r
	return r, nil
}

// splitName returns the volume and the path inside it of a tar name, or
// ErrInvalidStream when the name leaves the volume.
func splitName(name string) (volume, rel string, err error) {
	trimmed := strings.TrimSuffix(name, "/")
	volume, rel, _ = strings.Cut(trimmed, "/")
	if !validVolumeName(volume) {
		return "", "", fmt.Errorf("%w: entry %q names no volume", ErrInvalidStream, name)
	}
	if rel == "" {
		return volume, ".", nil
	}
	if strings.ContainsRune(rel, 0) || path.Clean(rel) != rel || !filepath.IsLocal(rel) {
		return "", "", fmt.Errorf("%w: entry %q leaves its volume", ErrInvalidStream, name)
	}
	return volume, rel, nil
}

func (x *extractor) run(tr *tar.Reader) (Stats, error) {
	var stats Stats
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return stats, nil
		}
		if err != nil {
			return stats, fmt.Errorf("%w: %w", ErrInvalidStream, err)
		}
		volume, rel, err := splitName(hdr.Name)
		if err != nil {
			return stats, err
		}
		root, err := x.root(volume)
		if err != nil {
			return stats, err
		}
		size, err := x.extractEntry(root, volume, rel, hdr, tr)
		if err != nil {
			return stats, fmt.Errorf("failed to restore %s: %w", hdr.Name, err)
		}
		var entries int64
		if rel != "." {
			entries = 1
		}
		stats.add(volume, size, entries)
	}
}

func (x *extractor) extractEntry(root *os.Root, volume, rel string, hdr *tar.Header, r io.Reader) (int64, error) {
	if hdr.Typeflag == tar.TypeDir {
		if rel != "." {
			if err := root.Mkdir(rel, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return 0, err
			}
			if info, err := root.Lstat(rel); err != nil || !info.IsDir() {
				if err := replace(root, rel); err != nil {
					return 0, err
				}
				if err := root.Mkdir(rel, 0o700); err != nil {
					return 0, err
				}
			}
		}
		x.pending = append(x.pending, pendingDir{root: root, rel: rel, hdr: hdr})
		return 0, nil
	}
	if rel == "." {
		return 0, fmt.Errorf("%w: the volume's own entry is not a directory", ErrInvalidStream)
	}
	if err := replace(root, rel); err != nil {
		return 0, err
	}

	var size int64
	switch hdr.Typeflag {
	case tar.TypeReg:
		f, err := root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return 0, err
		}
		err = writeSparse(f, r, hdr.Size, x.buf)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return 0, err
		}
		size = hdr.Size
	case tar.TypeLink:
		linkVolume, target, err := splitName(hdr.Linkname)
		if err != nil || linkVolume != volume || target == "." {
			return 0, fmt.Errorf("%w: hard link to %q outside its volume", ErrInvalidStream, hdr.Linkname)
		}
		if info, err := root.Lstat(target); err != nil || !info.Mode().IsRegular() {
			return 0, fmt.Errorf("%w: hard link to %q, which is not a regular file written before",
				ErrInvalidStream, hdr.Linkname)
		}
		// A hard link shares the inode, whose owner, mode and times the
		// link's target entry set already.
		return 0, root.Link(target, rel)
	case tar.TypeSymlink:
		if err := root.Symlink(hdr.Linkname, rel); err != nil {
			return 0, err
		}
	case tar.TypeFifo:
		if err := atParent(root, rel, func(fd int, base string) error {
			return unix.Mkfifoat(fd, base, 0o600)
		}); err != nil {
			return 0, err
		}
	default:
		return 0, fmt.Errorf("%w: entry type %q", ErrInvalidStream, hdr.Typeflag)
	}
	return size, setAttributes(root, rel, hdr)
}

// replace removes what exists at rel, so the entry is created afresh and a
// symbolic link left there is never followed.
func replace(root *os.Root, rel string) error {
	if err := root.RemoveAll(rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// writeSparse copies size bytes from r to f and leaves each block of
// holeBlock bytes that holds only zeros as a hole. The file's contents
// read back the same; it may use less space than the original.
func writeSparse(f *os.File, r io.Reader, size int64, buf []byte) error {
	var off int64
	for off < size {
		n, err := io.ReadFull(r, buf[:min(int64(len(buf)), size-off)])
		if err != nil {
			return fmt.Errorf("%w: file data ends early: %w", ErrInvalidStream, err)
		}
		chunk := buf[:n]
		for len(chunk) > 0 {
			block := chunk[:min(holeBlock, len(chunk))]
			if !allZero(block) {
				if _, err := f.WriteAt(block, off); err != nil {
					return err
				}
			}
			off += int64(len(block))
			chunk = chunk[len(block):]
		}
	}
	return f.Truncate(size)
}

var zeroBlock [holeBlock]byte

func allZero(b []byte) bool {
	return bytes.Equal(b, zeroBlock[:len(b)])
}

// setAttributes sets the owner, then the mode (a change of owner clears the
// set-user-ID bit), then the times of the entry at rel. A symbolic link has
// no mode of its own.
func setAttributes(root *os.Root, rel string, hdr *tar.Header) error {
	if err := chown(root, rel, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	if hdr.Typeflag == tar.TypeSymlink {
		return atParent(root, rel, func(fd int, base string) error {
			ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
			return unix.UtimesNanoAt(fd, base, ts, unix.AT_SYMLINK_NOFOLLOW)
		})
	}
	if err := root.Chmod(rel, fileMode(hdr.Mode)); err != nil {
		return err
	}
	return root.Chtimes(rel, atime, hdr.ModTime)
}

// chown sets the owner and group of rel, without following a symbolic
// link. When the process may not, it succeeds if the entry has them
// already.
func chown(root *os.Root, rel string, uid, gid int) error {
	err := root.Lchown(rel, uid, gid)
	if err == nil || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	if info, serr := root.Lstat(rel); serr == nil {
		if st, ok := info.Sys().(*syscall.Stat_t); ok && int(st.Uid) == uid && int(st.Gid) == gid {
			return nil
		}
	}
	return fmt.Errorf("cannot give it owner %d and group %d as user %d: %w", uid, gid, os.Getuid(), err)
}

// fileMode converts the permission bits and the set-user-ID, set-group-ID
// and sticky bits of a tar header's mode.
func fileMode(mode int64) fs.FileMode {
	m := fs.FileMode(mode & 0o777)
	if mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// atParent calls fn with an open descriptor of rel's parent directory,
// resolved inside root, and rel's last element, for the calls os.Root
// lacks.
func atParent(root *os.Root, rel string, fn func(fd int, base string) error) error {
	dir, base := path.Split(rel)
	if dir == "" {
		dir = "."
	}
	d, err := root.Open(dir)
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }()
	return fn(int(d.Fd()), base)
}

// finishDirs sets the owner, mode and times of each directory, deepest
// first, so that writing an entry no longer changes its directory's
// modification time and a read-only directory was writable while it
// filled.
func (x *extractor) finishDirs() error {
	for i := len(x.pending) - 1; i >= 0; i-- {
		p := x.pending[i]
		if err := setAttributes(p.root, p.rel, p.hdr); err != nil {
			return fmt.Errorf("failed to restore %s: %w", p.hdr.Name, err)
		}
	}
	return nil
}
