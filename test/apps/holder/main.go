// Command holder is the test workload of the process checks before the
// cut. It counts once per interval and prints each count, so a restored
// process shows that it continues from its checkpoint, and on request it
// holds one of the kernel objects that CRIU cannot dump or restore:
//
//	-io-uring          an io_uring instance (io_uring_setup)
//	-inotify-root      an inotify watch on its own root directory
//	-pidfd             a pidfd of its own process (pidfd_open)
//	-mqueue NAME       an open POSIX message queue (mq_open)
//	-deleted-mib N     an open file of N MiB under -deleted-dir, unlinked
//	-pipes N           N pipes with one unread byte each
//	-sysv-shm          an attached System V shared memory segment
//	-open PATH         an open file at PATH (on an emptyDir volume, whose
//	                   file is missing after a move, it makes the restore fail)
//
// Each flag can also be set by an environment variable of the same name in
// upper case with HOLDER_ in front (HOLDER_IO_URING=true, HOLDER_PIPES=1100).
// -exit-after N makes the process exit with status 0 after N counts, and
// -exit-file PATH once PATH exists, so a restart of the container shows
// whether it starts fresh (count 0) or from its checkpoint again.
// "holder touch PATH" creates a file and exits, for images without a shell.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// held keeps every object's file descriptors and memory reachable, so the
// garbage collector closes none of them.
var held []any

func main() {
	// "holder touch PATH" creates a file, for images without a shell.
	if len(os.Args) == 3 && os.Args[1] == "touch" {
		if err := os.MkdirAll(filepath.Dir(os.Args[2]), 0o755); err != nil {
			fatal(err)
		}
		if err := os.WriteFile(os.Args[2], nil, 0o644); err != nil {
			fatal(err)
		}
		return
	}
	interval := flag.Duration("interval", time.Second, "time between two counts")
	ioUring := flag.Bool("io-uring", false, "hold an io_uring instance")
	inotifyRoot := flag.Bool("inotify-root", false, "hold an inotify watch on the root directory /")
	pidfd := flag.Bool("pidfd", false, "hold a pidfd of this process")
	mqueue := flag.String("mqueue", "", "name of a POSIX message queue to create and hold open; empty holds none")
	deletedMiB := flag.Int("deleted-mib", 0, "size in MiB of an open, deleted file to hold; 0 holds none")
	deletedDir := flag.String("deleted-dir", "/tmp", "directory of the deleted file")
	pipes := flag.Int("pipes", 0, "number of pipes to hold, each with one unread byte")
	sysvShm := flag.Bool("sysv-shm", false, "hold an attached System V shared memory segment")
	openPath := flag.String("open", "", "file to create and hold open, for example on an emptyDir volume, "+
		"which starts empty after a move; empty holds none")
	leavePath := flag.String("leave", "", "file to create, write and close, for example in /dev/shm; empty "+
		"leaves none")
	readPath := flag.String("read", "", "existing file to open read-only and hold, for example on a read-only "+
		"volume; empty holds none")
	exitAfter := flag.Int64("exit-after", 0, "exit with status 0 after this many counts; 0 never exits")
	exitFile := flag.String("exit-file", "", "exit with status 0 once this file exists; empty never checks")
	flag.Parse()
	if err := setFromEnvironment(flag.CommandLine); err != nil {
		fatal(err)
	}

	steps := []struct {
		enabled bool
		name    string
		hold    func() (string, error)
	}{
		{*ioUring, "io_uring", holdIOUring},
		{*inotifyRoot, "inotify", holdInotifyRoot},
		{*pidfd, "pidfd", holdPidfd},
		{*mqueue != "", "mqueue", func() (string, error) { return holdMessageQueue(*mqueue) }},
		{*deletedMiB > 0, "deleted file", func() (string, error) { return holdDeletedFile(*deletedDir, *deletedMiB) }},
		{*pipes > 0, "pipes", func() (string, error) { return holdPipes(*pipes) }},
		{*sysvShm, "sysv-shm", holdSysVShm},
		{*openPath != "", "open file", func() (string, error) { return holdOpenFile(*openPath) }},
		{*readPath != "", "file", func() (string, error) { return holdReadFile(*readPath) }},
		{*leavePath != "", "left file", func() (string, error) { return leaveFile(*leavePath) }},
	}
	for _, s := range steps {
		if !s.enabled {
			continue
		}
		what, err := s.hold()
		if err != nil {
			fatal(fmt.Errorf("failed to hold %s: %w", s.name, err))
		}
		fmt.Printf("holding %s\n", what)
	}

	host, _ := os.Hostname()
	for n := int64(0); ; n++ {
		fmt.Printf("count=%d pid=%d host=%s\n", n, os.Getpid(), host)
		if *exitAfter > 0 && n >= *exitAfter {
			fmt.Printf("exiting after %d counts\n", n)
			return
		}
		if *exitFile != "" {
			if _, err := os.Stat(*exitFile); err == nil {
				fmt.Printf("exiting because %s exists\n", *exitFile)
				return
			}
		}
		time.Sleep(*interval)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "holder:", err)
	os.Exit(1)
}

// setFromEnvironment sets each flag not given on the command line from
// HOLDER_<NAME>, with dashes as underscores.
func setFromEnvironment(fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		key := "HOLDER_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		value, ok := os.LookupEnv(key)
		if !ok || given[f.Name] {
			return
		}
		if err := f.Value.Set(value); err != nil {
			errs = append(errs, fmt.Errorf("invalid %s=%q: %w", key, value, err))
		}
	})
	return errors.Join(errs...)
}

// ioUringParams is struct io_uring_params of linux/io_uring.h (120 bytes).
type ioUringParams struct {
	SqEntries    uint32
	CqEntries    uint32
	Flags        uint32
	SqThreadCPU  uint32
	SqThreadIdle uint32
	Features     uint32
	WqFd         uint32
	Resv         [3]uint32
	SqOff        [10]uint32
	CqOff        [10]uint32
}

func holdIOUring() (string, error) {
	var params ioUringParams
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 8, uintptr(unsafe.Pointer(&params)), 0)
	if errno != 0 {
		return "", fmt.Errorf("io_uring_setup: %w", errno)
	}
	held = append(held, fd)
	return fmt.Sprintf("io_uring fd=%d", fd), nil
}

func holdInotifyRoot() (string, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		return "", fmt.Errorf("inotify_init1: %w", err)
	}
	wd, err := unix.InotifyAddWatch(fd, "/", unix.IN_CREATE|unix.IN_DELETE|unix.IN_MODIFY)
	if err != nil {
		return "", fmt.Errorf("inotify_add_watch /: %w", err)
	}
	held = append(held, fd)
	return fmt.Sprintf("inotify fd=%d watch=%d on /", fd, wd), nil
}

func holdPidfd() (string, error) {
	fd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		return "", fmt.Errorf("pidfd_open: %w", err)
	}
	held = append(held, fd)
	return fmt.Sprintf("pidfd fd=%d", fd), nil
}

// holdMessageQueue calls mq_open directly: the kernel takes the name
// without the leading slash that the C library's mq_open strips.
func holdMessageQueue(name string) (string, error) {
	p, err := unix.BytePtrFromString(strings.TrimPrefix(name, "/"))
	if err != nil {
		return "", err
	}
	fd, _, errno := unix.Syscall6(unix.SYS_MQ_OPEN, uintptr(unsafe.Pointer(p)),
		uintptr(unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC), 0o600, 0, 0, 0)
	if errno != 0 {
		return "", fmt.Errorf("mq_open %s: %w", name, errno)
	}
	held = append(held, fd)
	return fmt.Sprintf("message queue /%s fd=%d", strings.TrimPrefix(name, "/"), fd), nil
}

func holdDeletedFile(dir string, mib int) (string, error) {
	// An image that holds only this program has no /tmp.
	if err := os.MkdirAll(dir, 0o1777); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, "holder-deleted-*")
	if err != nil {
		return "", err
	}
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i)
	}
	for range mib {
		if _, err := f.Write(chunk); err != nil {
			return "", fmt.Errorf("failed to write %s: %w", f.Name(), err)
		}
	}
	if err := os.Remove(f.Name()); err != nil {
		return "", err
	}
	held = append(held, f)
	return fmt.Sprintf("deleted file %s of %d MiB fd=%d", f.Name(), mib, f.Fd()), nil
}

func holdPipes(n int) (string, error) {
	// Each pipe takes two descriptors; raise the soft limit to fit them.
	var limit unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &limit); err != nil {
		return "", err
	}
	if need := uint64(2*n + 64); limit.Cur < need {
		limit.Cur = min(need, limit.Max)
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &limit); err != nil {
			return "", fmt.Errorf("failed to raise the file limit to %d: %w", limit.Cur, err)
		}
	}
	for i := range n {
		var fds [2]int
		if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
			return "", fmt.Errorf("pipe %d of %d: %w", i+1, n, err)
		}
		if _, err := unix.Write(fds[1], []byte{'x'}); err != nil {
			return "", fmt.Errorf("failed to write to pipe %d: %w", i+1, err)
		}
		held = append(held, fds)
	}
	return fmt.Sprintf("%d pipes with unread data", n), nil
}

func holdSysVShm() (string, error) {
	id, err := unix.SysvShmGet(unix.IPC_PRIVATE, 1<<20, unix.IPC_CREAT|0o600)
	if err != nil {
		return "", fmt.Errorf("shmget: %w", err)
	}
	mem, err := unix.SysvShmAttach(id, 0, 0)
	if err != nil {
		return "", fmt.Errorf("shmat: %w", err)
	}
	mem[0] = 1
	held = append(held, mem)
	return fmt.Sprintf("System V shared memory id=%d", id), nil
}

func holdOpenFile(path string) (string, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	if _, err := f.WriteString("held by holder\n"); err != nil {
		return "", err
	}
	held = append(held, f)
	return fmt.Sprintf("open file %s fd=%d", path, f.Fd()), nil
}

func holdReadFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	held = append(held, f)
	return fmt.Sprintf("file %s open for reading fd=%d", path, f.Fd()), nil
}

func leaveFile(path string) (string, error) {
	if err := os.WriteFile(path, []byte("left by holder\n"), 0o644); err != nil {
		return "", err
	}
	return fmt.Sprintf("nothing of %s, written and closed", path), nil
}
