package procscan

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// A /proc tree built for a test: each proc is written as the kernel lays
// out /proc/<pid>, with fd links whose targets are the strings the kernel
// shows.

const (
	hostIPC = "ipc:[4026531839]"
	podIPC  = "ipc:[4026532100]"
	// overlayRoot is a container's root as mountinfo shows it (device 0:60).
	overlayRoot = "50 27 0:60 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w\n" +
		"51 50 0:61 / /tmp rw - tmpfs tmpfs rw\n" +
		"52 50 254:0 /vol /data rw - ext4 /dev/vda rw\n"
)

type proc struct {
	pid      int
	comm     string
	tty      int
	ipc      string
	children []int
	// fds maps a descriptor to its link target.
	fds    map[int]string
	fdinfo map[int]string
	// deleted maps a descriptor to the size of the deleted file it opens.
	deleted map[int]int64
	// maps are lines of /proc/<pid>/maps; mapSizes the sizes of the files
	// behind their map_files links, by address range.
	maps     []string
	mapSizes map[string]int64
	cgroup   string
}

// fakeKernel replaces the live kernel, whose answers need a running
// process. It returns the unread bytes of pipes and the file system magic
// of files, by /proc link path.
type fakeKernel struct {
	pipeBytes map[string]int
	magic     map[string]int64
}

func (k fakeKernel) PipeQueuedBytes(path string) (int, error) {
	if n, ok := k.pipeBytes[path]; ok {
		return n, nil
	}
	return 0, nil
}

func (k fakeKernel) FilesystemMagic(path string) (int64, error) {
	if m, ok := k.magic[path]; ok {
		return m, nil
	}
	return 0xef53, nil
}

// tree writes procs under root/proc and returns the proc root. Pipe data
// and file system magics go into k.
func buildTree(t testing.TB, root string, procs []proc, k *fakeKernel) string {
	t.Helper()
	procRoot := filepath.Join(root, "proc")
	mustMkdir(t, filepath.Join(procRoot, "1", "ns"))
	mustSymlink(t, hostIPC, filepath.Join(procRoot, "1", "ns", "ipc"))
	for _, p := range procs {
		writeProc(t, root, procRoot, p, k)
	}
	return procRoot
}

func writeProc(t testing.TB, root, procRoot string, p proc, k *fakeKernel) {
	dir := filepath.Join(procRoot, strconv.Itoa(p.pid))
	for _, sub := range []string{"fd", "fdinfo", "ns", "map_files", filepath.Join("task", strconv.Itoa(p.pid))} {
		mustMkdir(t, filepath.Join(dir, sub))
	}
	comm := p.comm
	if comm == "" {
		comm = "app"
	}
	mustWrite(t, filepath.Join(dir, "stat"), fmt.Sprintf("%d (%s) S 1 %d %d %d -1 4194560 0 0 0 0\n", p.pid,
		comm, p.pid, p.pid, p.tty))
	mustWrite(t, filepath.Join(dir, "comm"), comm+"\n")
	ipc := p.ipc
	if ipc == "" {
		ipc = podIPC
	}
	mustSymlink(t, ipc, filepath.Join(dir, "ns", "ipc"))
	mustSymlink(t, "mnt:[4026532200]", filepath.Join(dir, "ns", "mnt"))
	mustWrite(t, filepath.Join(dir, "mountinfo"), overlayRoot)
	cgroup := p.cgroup
	if cgroup == "" {
		cgroup = "0::/pod/c1\n"
	}
	mustWrite(t, filepath.Join(dir, "cgroup"), cgroup)
	var children []string
	for _, c := range p.children {
		children = append(children, strconv.Itoa(c))
	}
	mustWrite(t, filepath.Join(dir, "task", strconv.Itoa(p.pid), "children"), strings.Join(children, " "))

	for fd, target := range p.fds {
		if size, ok := p.deleted[fd]; ok {
			// The link must lead to a file of that size, as the kernel's
			// magic link does; its name keeps the " (deleted)" suffix.
			file := filepath.Join(root, "files", fmt.Sprintf("%d-%d (deleted)", p.pid, fd))
			mustMkdir(t, filepath.Dir(file))
			mustTruncate(t, file, size)
			target = file
		}
		link := filepath.Join(dir, "fd", strconv.Itoa(fd))
		mustSymlink(t, target, link)
		info := p.fdinfo[fd]
		if info == "" {
			info = "pos:\t0\nflags:\t02\nmnt_id:\t17\n"
		}
		mustWrite(t, filepath.Join(dir, "fdinfo", strconv.Itoa(fd)), info)
	}
	mustWrite(t, filepath.Join(dir, "maps"), strings.Join(p.maps, "\n")+"\n")
	for rng, size := range p.mapSizes {
		file := filepath.Join(root, "files", fmt.Sprintf("map-%d-%s", p.pid, rng))
		mustMkdir(t, filepath.Dir(file))
		mustTruncate(t, file, size)
		mustSymlink(t, file, filepath.Join(dir, "map_files", rng))
	}
	_ = k
}

func mustMkdir(t testing.TB, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t testing.TB, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func mustTruncate(t testing.TB, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// found is the part of a Finding a test compares.
type found struct {
	Reason    lpmv1.Reason
	Container string
	PID       int
	FD        int
}

func project(fs []Finding) []found {
	var out []found
	for _, f := range fs {
		out = append(out, found{f.Reason, f.Container, f.PID, f.FD})
	}
	return out
}

func pipes(n int, firstFD int) map[int]string {
	fds := map[int]string{}
	for i := range n {
		fds[firstFD+2*i] = fmt.Sprintf("pipe:[%d]", 1000+i)
		fds[firstFD+2*i+1] = fmt.Sprintf("pipe:[%d]", 1000+i)
	}
	return fds
}

const (
	criu421 = 40201
	criu410 = 40100
	criu430 = 40300
)

func TestScanRules(t *testing.T) {
	inotifyOverlay := "pos:\t0\nflags:\t02000000\nmnt_id:\t17\nino:\t1039\n" +
		"inotify wd:1 ino:98a936 sdev:3c mask:302 ignored_mask:0 fhandle-bytes:20 fhandle-type:f8 " +
		"f_handle:00000000fb1d04010000000000000000\n"
	inotifyExt4 := "inotify wd:1 ino:2 sdev:fe00000 mask:302 ignored_mask:0 fhandle-bytes:8 " +
		"fhandle-type:1 f_handle:0200000000000000\n"
	inotifyNoHandle := "inotify wd:1 ino:5 sdev:3d mask:302 ignored_mask:0\n"
	fanotifyOverlay := "fanotify flags:0 event-flags:0\n" +
		"fanotify ino:98a936 sdev:3c mflags:0 mask:1 ignored_mask:0 fhandle-bytes:20 fhandle-type:f8 f_handle:00\n"
	fanotifyMount := "fanotify mnt_id:32 mflags:0 mask:1 ignored_mask:0\n"
	shmMap := "7f0000000000-7f0000100000 rw-s 00000000 00:1a 5 /dev/shm/held"
	pidfdOf := func(pid int) string {
		return fmt.Sprintf("pos:\t0\nflags:\t02\nmnt_id:\t4\nPid:\t%d\nNSpid:\t%d\n", pid, pid)
	}

	tests := []struct {
		name      string
		procs     []proc
		kernel    fakeKernel
		version   int
		ghost     int64
		cgroupDir map[string]string
		// devShmVolume marks the container as mounting a volume at /dev/shm.
		devShmVolume bool
		want         []found
	}{
		{
			name:    "plain process passes",
			procs:   []proc{{pid: 100, fds: map[int]string{0: "/dev/null", 1: "pipe:[5]", 3: "socket:[7]"}}},
			version: criu421,
		},
		{
			name:    "io_uring rejected",
			procs:   []proc{{pid: 100, fds: map[int]string{5: "anon_inode:[io_uring]"}}},
			version: criu421,
			want:    []found{{lpmv1.ReasonIOUringInUse, "app", 100, 5}},
		},
		{
			name: "io_uring in a child found",
			procs: []proc{{pid: 100, children: []int{101}},
				{pid: 101, comm: "redis-server", fds: map[int]string{9: "anon_inode:[io_uring]"}}},
			version: criu430,
			want:    []found{{lpmv1.ReasonIOUringInUse, "app", 101, 9}},
		},
		{
			name:    "inotify on overlay rejected by 4.2",
			procs:   []proc{{pid: 100, fds: map[int]string{6: "anon_inode:inotify"}, fdinfo: map[int]string{6: inotifyOverlay}}},
			version: criu421,
			want:    []found{{lpmv1.ReasonFileWatchUnsupported, "app", 100, 6}},
		},
		{
			name:    "inotify on overlay passes with 4.3",
			procs:   []proc{{pid: 100, fds: map[int]string{6: "anon_inode:inotify"}, fdinfo: map[int]string{6: inotifyOverlay}}},
			version: criu430,
		},
		{
			name:    "inotify on ext4 passes",
			procs:   []proc{{pid: 100, fds: map[int]string{6: "anon_inode:inotify"}, fdinfo: map[int]string{6: inotifyExt4}}},
			version: criu421,
		},
		{
			name: "inotify without file handle rejected",
			procs: []proc{{pid: 100, fds: map[int]string{6: "anon_inode:inotify"},
				fdinfo: map[int]string{6: inotifyNoHandle}}},
			version: criu430,
			want:    []found{{lpmv1.ReasonFileWatchUnsupported, "app", 100, 6}},
		},
		{
			name: "fanotify inode mark on overlay rejected",
			procs: []proc{{pid: 100, fds: map[int]string{4: "anon_inode:[fanotify]"},
				fdinfo: map[int]string{4: fanotifyOverlay}}},
			version: criu421,
			want:    []found{{lpmv1.ReasonFileWatchUnsupported, "app", 100, 4}},
		},
		{
			name: "fanotify mount mark passes",
			procs: []proc{{pid: 100, fds: map[int]string{4: "anon_inode:[fanotify]"},
				fdinfo: map[int]string{4: fanotifyMount}}},
			version: criu421,
		},
		{
			name:    "pidfd rejected before 4.2",
			procs:   []proc{{pid: 100, fds: map[int]string{7: "anon_inode:[pidfd]"}, fdinfo: map[int]string{7: pidfdOf(100)}}},
			version: criu410,
			want:    []found{{lpmv1.ReasonPidfdUnsupported, "app", 100, 7}},
		},
		{
			name:    "pidfd of own process passes with 4.2",
			procs:   []proc{{pid: 100, fds: map[int]string{7: "anon_inode:[pidfd]"}, fdinfo: map[int]string{7: pidfdOf(100)}}},
			version: criu421,
		},
		{
			name: "pidfd of child passes with 4.2",
			procs: []proc{{pid: 100, children: []int{101}, fds: map[int]string{7: "anon_inode:[pidfd]"},
				fdinfo: map[int]string{7: pidfdOf(101)}}, {pid: 101}},
			version: criu421,
		},
		{
			name:    "pidfd outside the tree rejected",
			procs:   []proc{{pid: 100, fds: map[int]string{7: "anon_inode:[pidfd]"}, fdinfo: map[int]string{7: pidfdOf(1)}}},
			version: criu421,
			want:    []found{{lpmv1.ReasonPidfdUnsupported, "app", 100, 7}},
		},
		{
			name:    "pidfd of exited process rejected",
			procs:   []proc{{pid: 100, fds: map[int]string{7: "anon_inode:[pidfd]"}, fdinfo: map[int]string{7: pidfdOf(-1)}}},
			version: criu421,
			want:    []found{{lpmv1.ReasonPidfdUnsupported, "app", 100, 7}},
		},
		{
			name:    "message queue rejected",
			procs:   []proc{{pid: 100, fds: map[int]string{8: "/lpmq", 9: "/etc/hosts"}}},
			kernel:  fakeKernel{magic: map[string]int64{"100/fd/8": mqueueMagic}},
			version: criu421,
			want:    []found{{lpmv1.ReasonMessageQueueInUse, "app", 100, 8}},
		},
		{
			name:    "unlinked message queue rejected once",
			procs:   []proc{{pid: 100, fds: map[int]string{8: "/lpmq (deleted)"}}},
			kernel:  fakeKernel{magic: map[string]int64{"100/fd/8": mqueueMagic}},
			version: criu421,
			want:    []found{{lpmv1.ReasonMessageQueueInUse, "app", 100, 8}},
		},
		{
			name:    "controlling terminal rejected",
			procs:   []proc{{pid: 100, tty: 34816, fds: map[int]string{0: "/dev/pts/0"}}},
			version: criu421,
			want:    []found{{lpmv1.ReasonControllingTerminal, "app", 100, -1}},
		},
		{
			name:    "deleted file above the ghost limit rejected",
			procs:   []proc{{pid: 100, fds: map[int]string{9: "deleted"}, deleted: map[int]int64{9: 2 << 20}}},
			version: criu421,
			want:    []found{{lpmv1.ReasonDeletedFileTooLarge, "app", 100, 9}},
		},
		{
			name:    "deleted file below the ghost limit passes",
			procs:   []proc{{pid: 100, fds: map[int]string{9: "deleted"}, deleted: map[int]int64{9: 512 << 10}}},
			version: criu421,
		},
		{
			name:    "deleted file under a raised ghost limit passes",
			procs:   []proc{{pid: 100, fds: map[int]string{9: "deleted"}, deleted: map[int]int64{9: 2 << 20}}},
			version: criu421,
			ghost:   4 << 20,
		},
		{
			name: "deleted mapped library above the limit rejected",
			procs: []proc{{pid: 100,
				maps: []string{"7f0000000000-7f0000300000 r-xp 00000000 00:3c 123 " +
					"/tmp/libnative-1234.so (deleted)"},
				mapSizes: map[string]int64{"7f0000000000-7f0000300000": 3 << 20}}},
			version: criu421,
			want:    []found{{lpmv1.ReasonDeletedFileTooLarge, "app", 100, -1}},
		},
		{
			name:    "open /dev/shm file rejected",
			procs:   []proc{{pid: 100, fds: map[int]string{6: "/dev/shm/held", 7: "/dev/shm-notes"}}},
			version: criu421,
			want:    []found{{lpmv1.ReasonSharedMemoryFileInUse, "app", 100, 6}},
		},
		{
			name: "mapped /dev/shm file rejected",
			procs: []proc{{pid: 100, maps: []string{
				shmMap,
				"7f0000200000-7f0000300000 r--s 00000000 00:1a 5 /dev/shm/held"}}},
			version: criu421,
			want:    []found{{lpmv1.ReasonSharedMemoryFileInUse, "app", 100, -1}},
		},
		{
			name:    "open and mapped /dev/shm file rejected once",
			procs:   []proc{{pid: 100, fds: map[int]string{6: "/dev/shm/held"}, maps: []string{shmMap}}},
			version: criu421,
			want:    []found{{lpmv1.ReasonSharedMemoryFileInUse, "app", 100, 6}},
		},
		{
			name:         "/dev/shm file on a volume passes",
			procs:        []proc{{pid: 100, fds: map[int]string{6: "/dev/shm/held"}, maps: []string{shmMap}}},
			version:      criu421,
			devShmVolume: true,
		},
		{
			name: "open configMap file rejected",
			procs: []proc{{pid: 100, fds: map[int]string{
				6: "/etc/config/..2026_12_05_01_59_15.2748875017/app.yaml",
				7: "/etc/config/..data-notes",
			}}},
			version: criu421,
			want:    []found{{lpmv1.ReasonVolumeFileInUse, "app", 100, 6}},
		},
		{
			name: "mapped secret file rejected",
			procs: []proc{{pid: 100, maps: []string{"7f0000000000-7f0000001000 r--s 00000000 00:1b 7 " +
				"/var/run/secrets/app/..2026_12_05_01_59_15.1/key"}}},
			version: criu421,
			want:    []found{{lpmv1.ReasonVolumeFileInUse, "app", 100, -1}},
		},
		{
			name:    "configMap file by subPath passes",
			procs:   []proc{{pid: 100, fds: map[int]string{6: "/etc/config/app.yaml"}}},
			version: criu421,
		},
		{
			name:    "deleted /dev/shm file passes",
			procs:   []proc{{pid: 100, fds: map[int]string{6: "/dev/shm/held (deleted)"}}},
			version: criu421,
		},
		{
			name: "memfd mapping passes",
			procs: []proc{{pid: 100,
				maps:     []string{"7f0000000000-7f0000300000 rw-s 00000000 00:01 9 /memfd:jit (deleted)"},
				mapSizes: map[string]int64{"7f0000000000-7f0000300000": 3 << 20}}},
			version: criu421,
		},
		{
			name: "System V memory of the host rejected",
			procs: []proc{{pid: 100, ipc: hostIPC,
				maps: []string{"7f3c13d60000-7f3c13e60000 rw-s 00000000 00:01 0 /SYSV00000000 (deleted)"}}},
			version: criu421,
			want:    []found{{lpmv1.ReasonHostSharedMemory, "app", 100, -1}},
		},
		{
			name: "System V memory of the pod passes",
			procs: []proc{{pid: 100,
				maps: []string{"7f3c13d60000-7f3c13e60000 rw-s 00000000 00:01 0 /SYSV00000000 (deleted)"}}},
			version: criu421,
		},
		{
			name:    "1024 pipes with data pass",
			procs:   []proc{{pid: 100, fds: pipes(1024, 10)}},
			kernel:  fakeKernel{pipeBytes: pipeData(100, 1024, 10)},
			version: criu421,
		},
		{
			name:    "1100 pipes with data rejected",
			procs:   []proc{{pid: 100, fds: pipes(1100, 10)}},
			kernel:  fakeKernel{pipeBytes: pipeData(100, 1100, 10)},
			version: criu421,
			want:    []found{{lpmv1.ReasonTooManyPipesWithData, "app", 100, -1}},
		},
		{
			name:    "1100 empty pipes pass",
			procs:   []proc{{pid: 100, fds: pipes(1100, 10)}},
			version: criu421,
		},
		{
			name:      "frozen v2 cgroup rejected",
			procs:     []proc{{pid: 100, fds: map[int]string{5: "anon_inode:[io_uring]"}}},
			version:   criu421,
			cgroupDir: map[string]string{"unified/pod/c1/cgroup.events": "populated 1\nfrozen 1\n"},
			want:      []found{{lpmv1.ReasonContainerFrozen, "app", 100, -1}},
		},
		{
			name:      "thawed v2 cgroup passes",
			procs:     []proc{{pid: 100}},
			version:   criu421,
			cgroupDir: map[string]string{"unified/pod/c1/cgroup.events": "populated 1\nfrozen 0\n"},
		},
		{
			name:      "frozen v1 freezer rejected",
			procs:     []proc{{pid: 100, cgroup: "7:freezer:/pod/c1\n0::/pod/c1\n"}},
			version:   criu421,
			cgroupDir: map[string]string{"freezer/pod/c1/freezer.state": "FROZEN\n"},
			want:      []found{{lpmv1.ReasonContainerFrozen, "app", 100, -1}},
		},
		{
			name:      "freezing v1 freezer rejected",
			procs:     []proc{{pid: 100, cgroup: "7:freezer:/pod/c1\n0::/pod/c1\n"}},
			version:   criu421,
			cgroupDir: map[string]string{"freezer/pod/c1/freezer.state": "FREEZING\n"},
			want:      []found{{lpmv1.ReasonContainerFrozen, "app", 100, -1}},
		},
		{
			name:    "unknown CRIU version applies every rule",
			procs:   []proc{{pid: 100, fds: map[int]string{7: "anon_inode:[pidfd]"}, fdinfo: map[int]string{7: pidfdOf(100)}}},
			version: 0,
			want:    []found{{lpmv1.ReasonPidfdUnsupported, "app", 100, 7}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			procRoot := buildTree(t, root, tc.procs, &tc.kernel)
			cgroupRoot := filepath.Join(root, "cgroup")
			mustMkdir(t, cgroupRoot)
			for path, data := range tc.cgroupDir {
				mustMkdir(t, filepath.Dir(filepath.Join(cgroupRoot, path)))
				mustWrite(t, filepath.Join(cgroupRoot, path), data)
			}
			sc := Scanner{ProcRoot: procRoot, CgroupRoot: cgroupRoot, Kernel: prefixed(procRoot, tc.kernel),
				Policy: Policy{CRIUVersion: tc.version, GhostLimit: tc.ghost}}

			res, err := sc.Scan([]Container{{Name: "app", PID: tc.procs[0].pid, DevShmVolume: tc.devShmVolume}})

			if err != nil {
				t.Fatalf("Scan() error = %v", err)
			}
			if diff := cmp.Diff(tc.want, project(res.Findings)); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
			for _, f := range res.Findings {
				if f.Problem == "" || f.Fix == "" || !strings.Contains(f.Message(), "Fix: ") {
					t.Errorf("finding %+v lacks a problem or a fix", f)
				}
			}
		})
	}
}

func pipeData(pid, n, firstFD int) map[string]int {
	out := map[string]int{}
	for i := range n {
		out[fmt.Sprintf("%d/fd/%d", pid, firstFD+2*i)] = 1
		out[fmt.Sprintf("%d/fd/%d", pid, firstFD+2*i+1)] = 1
	}
	return out
}

// prefixed turns the fake kernel's "<pid>/fd/<n>" keys into paths under
// procRoot.
func prefixed(procRoot string, k fakeKernel) fakeKernel {
	out := fakeKernel{pipeBytes: map[string]int{}, magic: map[string]int64{}}
	for key, v := range k.pipeBytes {
		out.pipeBytes[filepath.Join(procRoot, key)] = v
	}
	for key, v := range k.magic {
		out.magic[filepath.Join(procRoot, key)] = v
	}
	return out
}

func TestScanSkipsExitedChild(t *testing.T) {
	root := t.TempDir()
	procRoot := buildTree(t, root, []proc{{pid: 100, children: []int{101}}}, &fakeKernel{})
	sc := Scanner{ProcRoot: procRoot, CgroupRoot: root, Kernel: fakeKernel{}, Policy: Policy{CRIUVersion: criu421}}

	res, err := sc.Scan([]Container{{Name: "app", PID: 100}})

	if err != nil {
		t.Fatalf("Scan() error = %v", err)
	}
	if res.Processes != 1 {
		t.Errorf("Processes = %d, want 1", res.Processes)
	}
}

func TestScanMissingInitFails(t *testing.T) {
	root := t.TempDir()
	procRoot := buildTree(t, root, nil, &fakeKernel{})
	sc := Scanner{ProcRoot: procRoot, CgroupRoot: root, Kernel: fakeKernel{}}

	if _, err := sc.Scan([]Container{{Name: "app", PID: 100}}); err == nil {
		t.Fatal("Scan() of a missing process succeeded")
	}
}

func TestFindingMessage(t *testing.T) {
	f := Finding{Container: "db", PID: 42, Command: "redis-server", FD: 7, Object: "anon_inode:[io_uring]",
		Problem: "CRIU cannot dump io_uring instances", Fix: "turn io_uring off"}
	want := "container db, process 42 (redis-server), fd 7 (anon_inode:[io_uring]): CRIU cannot dump " +
		"io_uring instances. Fix: turn io_uring off"
	if got := f.Message(); got != want {
		t.Errorf("Message() = %q, want %q", got, want)
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		line        string
		wantCommand string
		wantTTY     int
		wantErr     bool
	}{
		{line: "1 (init) S 0 1 1 0 -1", wantCommand: "init"},
		{line: "7 (a (b) c) S 1 7 7 34816 7", wantCommand: "a (b) c", wantTTY: 34816},
		{line: "7 (x) S 1", wantErr: true},
		{line: "garbage", wantErr: true},
	}
	for _, tc := range tests {
		command, tty, err := parseStat(tc.line)
		if (err != nil) != tc.wantErr {
			t.Errorf("parseStat(%q) error = %v, wantErr %v", tc.line, err, tc.wantErr)
			continue
		}
		if command != tc.wantCommand || tty != tc.wantTTY {
			t.Errorf("parseStat(%q) = %q, %d, want %q, %d", tc.line, command, tty, tc.wantCommand, tc.wantTTY)
		}
	}
}

func TestVersionNumber(t *testing.T) {
	tests := map[string]int{"4.2.1": 40201, "3.16": 31600, "v4.0": 40000, "": 0, "x.1": 0, "4.100": 0}
	for in, want := range tests {
		if got := VersionNumber(in); got != want {
			t.Errorf("VersionNumber(%q) = %d, want %d", in, got, want)
		}
	}
}
