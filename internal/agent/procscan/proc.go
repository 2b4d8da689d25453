package procscan

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// mqueueMagic is the statfs magic of the mqueue file system
// (MQUEUE_MAGIC in linux/magic.h).
const mqueueMagic = 0x19800202

// Kernel reports facts about an open file that only the running kernel has,
// because /proc shows it nowhere as text.
type Kernel interface {
	// PipeQueuedBytes returns the number of unread bytes in the pipe that
	// path (a /proc/<pid>/fd/<n> link) refers to.
	PipeQueuedBytes(path string) (int, error)
	// FilesystemMagic returns the statfs magic of the file system of the
	// file that path refers to.
	FilesystemMagic(path string) (int64, error)
}

// LiveKernel queries the running kernel through the /proc links.
type LiveKernel struct{}

// PipeQueuedBytes opens the pipe through its /proc link, which adds a
// reader without taking any data, and calls FIONREAD (TIOCINQ, the same request number).
func (LiveKernel) PipeQueuedBytes(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return 0, err
	}
	defer func() { _ = unix.Close(fd) }()
	return unix.IoctlGetInt(fd, unix.TIOCINQ)
}

// FilesystemMagic calls statfs on the file the link refers to.
func (LiveKernel) FilesystemMagic(path string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, err
	}
	return st.Type, nil
}

// process holds the facts the scanner read about one process.
type process struct {
	pid     int
	command string
	// ttyNr is the controlling terminal's device number, 0 for none.
	ttyNr int
	// ipcNS and mntNS are the namespace links, for example ipc:[4026531839].
	ipcNS string
	mntNS string
	fds   []openFile
	// deletedMaps are mapped files that were deleted, by path, with size.
	deletedMaps []mappedFile
	// sysvShm lists the attached System V shared memory segments.
	sysvShm []string
	// mappedFiles are the paths of the mapped files that still exist, each
	// once.
	mappedFiles []string
}

// openFile is one file descriptor.
type openFile struct {
	fd int
	// target is the link's target, for example pipe:[123] or /tmp/x (deleted).
	target string
	// size is the size of a deleted regular file.
	size int64
	// magic is the statfs magic of a file with a path, 0 when not read.
	magic int64
	// watches are the inotify or fanotify inode marks of the descriptor.
	watches []watch
	// pidfdPID is the process a pidfd refers to: -1 when it has exited.
	pidfdPID int
	// pipeBytes is the unread data of a pipe.
	pipeBytes int
}

// watch is one inotify or fanotify mark on an inode.
type watch struct {
	// device is the watched file system's device as major:minor.
	device string
	inode  string
	// handleType is the file handle type, empty when the kernel could not
	// encode a handle.
	handleType string
}

// mappedFile is a deleted file mapped into memory.
type mappedFile struct {
	path string
	size int64
}

// mount is one line of mountinfo.
type mount struct {
	device     string
	fsType     string
	mountPoint string
}

// reader reads processes under a /proc root.
type reader struct {
	procRoot string
	kernel   Kernel
	// mounts caches mountinfo by mount namespace.
	mounts map[string][]mount
	// pipes caches the unread bytes of each pipe, by link target: every
	// descriptor of a pipe shows the same data.
	pipes map[string]int
	// netns caches the sockets of each network namespace, by its link.
	netns map[string]*netSockets
}

// errGone reports a process that exited while it was read.
var errGone = errors.New("process exited")

func (r *reader) path(pid int, parts ...string) string {
	return filepath.Join(append([]string{r.procRoot, strconv.Itoa(pid)}, parts...)...)
}

// tree returns pid and its descendants, read from the children files of
// each thread (CONFIG_PROC_CHILDREN), in depth-first order: the process
// tree CRIU dumps for a container whose init process is pid.
func (r *reader) tree(pid int) ([]int, error) {
	var out []int
	seen := map[int]bool{}
	stack := []int{pid}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[p] {
			continue
		}
		seen[p] = true
		out = append(out, p)
		children, err := r.children(p)
		if err != nil {
			if p == pid {
				return nil, err
			}
			continue
		}
		for i := len(children) - 1; i >= 0; i-- {
			stack = append(stack, children[i])
		}
	}
	return out, nil
}

func (r *reader) children(pid int) ([]int, error) {
	tasks, err := os.ReadDir(r.path(pid, "task"))
	if err != nil {
		return nil, fmt.Errorf("failed to list threads of process %d: %w", pid, err)
	}
	var out []int
	for _, t := range tasks {
		data, err := os.ReadFile(filepath.Join(r.path(pid, "task"), t.Name(), "children"))
		if err != nil {
			continue
		}
		for _, field := range strings.Fields(string(data)) {
			if child, err := strconv.Atoi(field); err == nil {
				out = append(out, child)
			}
		}
	}
	return out, nil
}

// read reads one process: stat, namespaces, file descriptors and maps.
func (r *reader) read(pid int) (*process, error) {
	p := &process{pid: pid}
	stat, err := os.ReadFile(r.path(pid, "stat"))
	if err != nil {
		return nil, gone(err)
	}
	if p.command, p.ttyNr, err = parseStat(string(stat)); err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	p.ipcNS, _ = os.Readlink(r.path(pid, "ns", "ipc"))
	p.mntNS, _ = os.Readlink(r.path(pid, "ns", "mnt"))
	if err := r.readFiles(p); err != nil {
		return nil, err
	}
	if err := r.readMaps(p); err != nil {
		return nil, err
	}
	return p, nil
}

func gone(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH) {
		return errGone
	}
	return err
}

// parseStat returns the command and tty_nr (field 7) of /proc/<pid>/stat.
// The command is in parentheses and may itself contain them.
func parseStat(stat string) (string, int, error) {
	open, end := strings.IndexByte(stat, '('), strings.LastIndexByte(stat, ')')
	if open < 0 || end < open {
		return "", 0, fmt.Errorf("invalid stat line %q", stat)
	}
	fields := strings.Fields(stat[end+1:])
	// After the command: state, ppid, pgrp, session, tty_nr.
	if len(fields) < 5 {
		return "", 0, fmt.Errorf("invalid stat line %q", stat)
	}
	tty, err := strconv.Atoi(fields[4])
	if err != nil {
		return "", 0, fmt.Errorf("invalid tty_nr %q", fields[4])
	}
	return stat[open+1 : end], tty, nil
}

// readFiles reads the descriptors, and the details of those a rule needs.
func (r *reader) readFiles(p *process) error {
	dir := r.path(p.pid, "fd")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return gone(err)
	}
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		link := filepath.Join(dir, e.Name())
		target, err := os.Readlink(link)
		if err != nil {
			// The descriptor was closed after the listing.
			continue
		}
		f := openFile{fd: n, target: target, pidfdPID: -1}
		if err := r.readFile(p.pid, link, &f); err != nil {
			return err
		}
		p.fds = append(p.fds, f)
	}
	return nil
}

func (r *reader) readFile(pid int, link string, f *openFile) error {
	switch {
	case strings.HasPrefix(f.target, "pipe:["):
		if n, ok := r.pipes[f.target]; ok {
			f.pipeBytes = n
			return nil
		}
		n, err := r.kernel.PipeQueuedBytes(link)
		if err != nil {
			return nil
		}
		if r.pipes == nil {
			r.pipes = map[string]int{}
		}
		f.pipeBytes, r.pipes[f.target] = n, n
	case f.target == "anon_inode:inotify" || f.target == "anon_inode:[fanotify]" ||
		f.target == "anon_inode:[pidfd]":
		data, err := os.ReadFile(r.path(pid, "fdinfo", strconv.Itoa(f.fd)))
		if err != nil {
			return nil
		}
		f.watches = parseWatches(string(data))
		f.pidfdPID = parsePidfdPID(string(data))
	case strings.HasPrefix(f.target, "/"):
		if magic, err := r.kernel.FilesystemMagic(link); err == nil {
			f.magic = magic
		}
		if strings.HasSuffix(f.target, " (deleted)") {
			if info, err := os.Stat(link); err == nil && info.Mode().IsRegular() {
				f.size = info.Size()
			}
		}
	}
	return nil
}

// parseWatches reads the inode marks of an inotify or fanotify fdinfo:
//
//	inotify wd:1 ino:2 sdev:fe00000 mask:302 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:...
//	fanotify ino:2 sdev:3c mflags:0 mask:1 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:...
//
// sdev is the kernel's dev_t: major in the bits above 20, minor below.
// Mount and file system marks of fanotify carry no sdev and are skipped.
func parseWatches(fdinfo string) []watch {
	var out []watch
	for _, line := range strings.Split(fdinfo, "\n") {
		if !strings.HasPrefix(line, "inotify ") && !strings.HasPrefix(line, "fanotify ") {
			continue
		}
		var w watch
		hasDevice := false
		for _, field := range strings.Fields(line)[1:] {
			key, value, _ := strings.Cut(field, ":")
			switch key {
			case "sdev":
				dev, err := strconv.ParseUint(value, 16, 32)
				if err != nil {
					continue
				}
				w.device = fmt.Sprintf("%d:%d", dev>>20, dev&0xfffff)
				hasDevice = true
			case "ino":
				w.inode = value
			case "fhandle-type":
				w.handleType = value
			}
		}
		if hasDevice {
			out = append(out, w)
		}
	}
	return out
}

// parsePidfdPID reads the Pid line of a pidfd's fdinfo, -1 when absent.
func parsePidfdPID(fdinfo string) int {
	for _, line := range strings.Split(fdinfo, "\n") {
		if value, ok := strings.CutPrefix(line, "Pid:"); ok {
			if pid, err := strconv.Atoi(strings.TrimSpace(value)); err == nil {
				return pid
			}
		}
	}
	return -1
}

// readMaps reads the files and System V segments mapped into the process.
// The size of a deleted file comes from its map_files link.
func (r *reader) readMaps(p *process) error {
	data, err := os.ReadFile(r.path(p.pid, "maps"))
	if err != nil {
		return gone(err)
	}
	seen := map[string]bool{}
	for _, line := range bytes.Split(data, []byte("\n")) {
		fields := strings.Fields(string(line))
		if len(fields) < 6 {
			continue
		}
		name := strings.Join(fields[5:], " ")
		if seen[name] {
			continue
		}
		seen[name] = true
		if !strings.HasSuffix(name, " (deleted)") {
			if strings.HasPrefix(name, "/") {
				p.mappedFiles = append(p.mappedFiles, name)
			}
			continue
		}
		switch {
		case strings.HasPrefix(name, "/SYSV"):
			p.sysvShm = append(p.sysvShm, strings.TrimSuffix(name, " (deleted)"))
		case strings.HasPrefix(name, "/memfd:"), strings.HasPrefix(name, "/dev/zero"):
			// CRIU dumps memfd and shared anonymous memory itself.
		default:
			m := mappedFile{path: strings.TrimSuffix(name, " (deleted)")}
			if info, err := os.Stat(r.path(p.pid, "map_files", fields[0])); err == nil {
				m.size = info.Size()
			}
			p.deletedMaps = append(p.deletedMaps, m)
		}
	}
	return nil
}

// mountsOf returns the mounts of a process, cached by mount namespace.
func (r *reader) mountsOf(p *process) []mount {
	if m, ok := r.mounts[p.mntNS]; ok && p.mntNS != "" {
		return m
	}
	f, err := os.Open(r.path(p.pid, "mountinfo"))
	if err != nil {
		return nil
	}
	defer func() { _ = f.Close() }()
	var out []mount
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 64<<10), 1<<20)
	for scanner.Scan() {
		if m, ok := parseMountinfoLine(scanner.Text()); ok {
			out = append(out, m)
		}
	}
	if r.mounts == nil {
		r.mounts = map[string][]mount{}
	}
	r.mounts[p.mntNS] = out
	return out
}

// parseMountinfoLine reads "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw".
func parseMountinfoLine(line string) (mount, bool) {
	left, right, ok := strings.Cut(line, " - ")
	if !ok {
		return mount{}, false
	}
	lf, rf := strings.Fields(left), strings.Fields(right)
	if len(lf) < 5 || len(rf) < 1 {
		return mount{}, false
	}
	return mount{device: lf[2], mountPoint: lf[4], fsType: rf[0]}, true
}
