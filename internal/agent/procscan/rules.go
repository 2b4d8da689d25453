package procscan

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// scope is the context the rules use beyond one process.
type scope struct {
	container string
	policy    Policy
	// hostIPC is the IPC namespace of the node's init process.
	hostIPC string
	// tree holds the PIDs of the container's process tree.
	tree map[int]bool
	// mounts returns the mounts in a process's mount namespace.
	mounts func(*process) []mount
	// sockets returns the sockets of a process's network namespace.
	sockets func(*process) *netSockets
	// devShmVolume is true when a pod volume is mounted at /dev/shm.
	devShmVolume bool
}

// processRule checks one process.
type processRule func(s scope, p *process) []Finding

// processRules run on every process, in this order.
var processRules = []processRule{
	ruleIOUring,
	ruleWatches,
	rulePidfds,
	ruleMessageQueues,
	ruleTerminal,
	ruleDeletedFiles,
	ruleHostSharedMemory,
	ruleSandboxSharedMemory,
	ruleVolumeFiles,
	ruleTCPConnections,
	ruleMultipathTCP,
}

func finding(s scope, p *process, reason lpmv1.Reason, fd int, object, problem, fix string) Finding {
	return Finding{Reason: reason, Container: s.container, PID: p.pid, Command: p.command, FD: fd,
		Object: object, Problem: problem, Fix: fix}
}

// ruleIOUring rejects io_uring instances: no CRIU release up to 4.2
// dumps them (4.2.1 fails with "send_fds failed (-22)").
func ruleIOUring(s scope, p *process) []Finding {
	var out []Finding
	for _, f := range p.fds {
		if f.target == "anon_inode:[io_uring]" {
			out = append(out, finding(s, p, lpmv1.ReasonIOUringInUse, f.fd, f.target,
				"CRIU cannot dump io_uring instances",
				"turn io_uring off in the application or its runtime (a build without liburing, or a "+
					"setting that falls back to epoll) and restart the pod"))
		}
	}
	return out
}

// ruleWatches rejects inotify and fanotify inode marks that CRIU cannot
// reopen on restore. Those are marks on an overlay file system (the
// container's root) before the CRIU release that handles them, and marks
// on a file system that could not encode a file handle for the inode.
func ruleWatches(s scope, p *process) []Finding {
	var out []Finding
	for _, f := range p.fds {
		if len(f.watches) == 0 {
			continue
		}
		var mounts []mount
		if s.mounts != nil {
			mounts = s.mounts(p)
		}
		for _, w := range f.watches {
			m, found := mountOfDevice(mounts, w.device)
			where := "device " + w.device
			if found {
				where = fmt.Sprintf("%s (%s)", m.mountPoint, m.fsType)
			}
			switch {
			case w.handleType == "":
				out = append(out, finding(s, p, lpmv1.ReasonFileWatchUnsupported, f.fd, f.target,
					fmt.Sprintf("it watches inode %s on %s, which cannot encode the file handle CRIU "+
						"reopens the watch with", w.inode, where),
					"watch files on a volume (emptyDir or a persistent volume) instead, or turn file "+
						"watching off in the application"))
			case found && m.fsType == "overlay" && !s.policy.dumpsOverlayWatches():
				out = append(out, finding(s, p, lpmv1.ReasonFileWatchUnsupported, f.fd, f.target,
					fmt.Sprintf("it watches inode %s on the overlay file system %s, and CRIU %s fails "+
						"on such watches with \"Can't dump that handle\"", w.inode, m.mountPoint,
						versionString(s.policy.CRIUVersion)),
					"watch files on a volume (emptyDir or a persistent volume) instead of the container's "+
						"root file system, turn file watching off in the application, or upgrade CRIU on "+
						"the node"))
			}
		}
	}
	return out
}

func mountOfDevice(mounts []mount, device string) (mount, bool) {
	// The root mount comes first; a bind mount of the same device later
	// names a narrower path, so the first match is the most general.
	for _, m := range mounts {
		if m.device == device {
			return m, true
		}
	}
	return mount{}, false
}

// rulePidfds rejects pidfds that CRIU cannot restore. Before CRIU 4.2 that
// is any pidfd. From 4.2 on it is a pidfd of a process outside the
// container's process tree, or of a process that has exited.
func rulePidfds(s scope, p *process) []Finding {
	var out []Finding
	for _, f := range p.fds {
		if f.target != "anon_inode:[pidfd]" {
			continue
		}
		switch {
		case !s.policy.dumpsPidfds():
			out = append(out, finding(s, p, lpmv1.ReasonPidfdUnsupported, f.fd, f.target,
				fmt.Sprintf("CRIU %s cannot dump pidfds", versionString(s.policy.CRIUVersion)),
				"upgrade CRIU on the node to 4.2 or later, or close the pidfd in the application"))
		case f.pidfdPID <= 0:
			out = append(out, finding(s, p, lpmv1.ReasonPidfdUnsupported, f.fd, f.target,
				"it refers to a process that has exited, which CRIU cannot recreate",
				"close pidfds of processes that were reaped"))
		case !s.tree[f.pidfdPID]:
			out = append(out, finding(s, p, lpmv1.ReasonPidfdUnsupported, f.fd, f.target,
				fmt.Sprintf("it refers to process %d outside the container's process tree, which does not "+
					"move with it", f.pidfdPID),
				"hold pidfds only of the container's own processes"))
		}
	}
	return out
}

// ruleMessageQueues rejects open POSIX message queues: CRIU up to 4.2
// cannot dump them ("Can't lookup mount=N for fd=M").
func ruleMessageQueues(s scope, p *process) []Finding {
	var out []Finding
	for _, f := range p.fds {
		if f.magic == mqueueMagic {
			out = append(out, finding(s, p, lpmv1.ReasonMessageQueueInUse, f.fd, "mqueue "+f.target,
				"CRIU cannot dump open POSIX message queues",
				"close the message queue before the migration, or use a pipe or socket instead"))
		}
	}
	return out
}

// ruleTerminal rejects a process with a controlling terminal: the runtime
// cannot hand a terminal to a restored container, and a failed restore of
// such a container through containerd has left a task that could not be
// deleted.
func ruleTerminal(s scope, p *process) []Finding {
	if p.ttyNr == 0 {
		return nil
	}
	object := fmt.Sprintf("terminal %d:%d", (p.ttyNr>>8)&0xfff, (p.ttyNr&0xff)|((p.ttyNr>>12)&0xfff00))
	for _, f := range p.fds {
		if strings.HasPrefix(f.target, "/dev/pts/") || strings.HasPrefix(f.target, "/dev/tty") {
			object = f.target
			break
		}
	}
	return []Finding{finding(s, p, lpmv1.ReasonControllingTerminal, -1, object,
		"it has a controlling terminal, which the runtime cannot restore",
		"set tty: false and stdin: false on the container")}
}

// ruleDeletedFiles rejects deleted files, open or mapped, that are larger
// than CRIU's ghost-file limit: CRIU copies a deleted file into the
// checkpoint and fails on larger ones.
func ruleDeletedFiles(s scope, p *process) []Finding {
	limit := s.policy.ghostLimit()
	fix := fmt.Sprintf("keep the file until the process exits instead of deleting it while open, or raise "+
		"ghost-limit in the node's CRIU configuration (/etc/criu/runc.conf) above its size; the limit is "+
		"%d bytes", limit)
	var out []Finding
	for _, f := range p.fds {
		if f.size > limit && f.magic != mqueueMagic && !strings.HasPrefix(f.target, "/memfd:") {
			out = append(out, finding(s, p, lpmv1.ReasonDeletedFileTooLarge, f.fd, f.target,
				fmt.Sprintf("the deleted file has %d bytes, more than CRIU's ghost-file limit", f.size), fix))
		}
	}
	for _, m := range p.deletedMaps {
		if m.size > limit {
			out = append(out, finding(s, p, lpmv1.ReasonDeletedFileTooLarge, -1, "mapping of "+m.path+" (deleted)",
				fmt.Sprintf("the deleted mapped file has %d bytes, more than CRIU's ghost-file limit", m.size),
				fix))
		}
	}
	return out
}

// ruleHostSharedMemory rejects System V shared memory of the node's IPC
// namespace (hostIPC): CRIU dumps only segments of an IPC namespace it
// dumps ("doesn't live in IPC ns").
func ruleHostSharedMemory(s scope, p *process) []Finding {
	if len(p.sysvShm) == 0 || s.hostIPC == "" || p.ipcNS != s.hostIPC {
		return nil
	}
	return []Finding{finding(s, p, lpmv1.ReasonHostSharedMemory, -1, p.sysvShm[0],
		fmt.Sprintf("it has %d System V shared memory segments of the node's IPC namespace attached",
			len(p.sysvShm)),
		"run the pod without hostIPC, so its shared memory lives in its own IPC namespace")}
}

// ruleSandboxSharedMemory rejects files of the pod sandbox's /dev/shm that
// a process holds open or maps. No checkpoint carries that tmpfs, so the
// restored pod gets it empty and CRIU fails to reopen the files after the
// cut. Deleted files are left to ruleDeletedFiles, because CRIU copies them.
func ruleSandboxSharedMemory(s scope, p *process) []Finding {
	if s.devShmVolume {
		return nil
	}
	return heldFiles(s, p, lpmv1.ReasonSharedMemoryFileInUse,
		func(path string) bool { return strings.HasPrefix(path, "/dev/shm/") },
		"the file lives in the pod sandbox's /dev/shm, which no checkpoint carries, so the restored pod "+
			"would start with an empty /dev/shm and CRIU could not reopen the file",
		"close and unmap the file before the migration, or mount a memory-backed emptyDir volume at "+
			"/dev/shm, whose files the migration carries")
}

// writerDirPattern matches the directory into which the kubelet writes the
// files of a configMap, secret, downwardAPI or projected volume. The name
// contains the time of writing, such as ..2026_12_05_01_59_15.2748875017.
var writerDirPattern = regexp.MustCompile(`/\.\.\d{4}_\d{2}_\d{2}_\d{2}_\d{2}_\d{2}\.\d+/`)

// ruleVolumeFiles rejects files of configMap, secret, downwardAPI and
// projected volumes that a process holds open or maps. Their paths run
// through the kubelet's timestamped directory, which has another name in
// the restored pod's volume, so CRIU fails to reopen them after the cut.
func ruleVolumeFiles(s scope, p *process) []Finding {
	return heldFiles(s, p, lpmv1.ReasonVolumeFileInUse, writerDirPattern.MatchString,
		"the file lies in a timestamped directory of a configMap, secret, downwardAPI or projected volume, "+
			"which has another name in the restored pod, so CRIU could not reopen it",
		"close the file after reading it, or mount the file with subPath, whose path stays the same")
}

// heldFiles returns a finding for each existing file that matches and that
// the process holds open or maps. A file both open and mapped counts once,
// at its descriptor.
func heldFiles(s scope, p *process, reason lpmv1.Reason, matches func(path string) bool, problem,
	fix string) []Finding {
	var out []Finding
	reported := map[string]bool{}
	for _, f := range p.fds {
		if matches(f.target) && !strings.HasSuffix(f.target, " (deleted)") {
			reported[f.target] = true
			out = append(out, finding(s, p, reason, f.fd, f.target, problem, fix))
		}
	}
	for _, path := range p.mappedFiles {
		if matches(path) && !reported[path] {
			out = append(out, finding(s, p, reason, -1, "mapping of "+path, problem, fix))
		}
	}
	return out
}

// rulePipes rejects a container whose processes hold more pipes with
// unread data than CRIU stores in one dump. A pipe counts once however
// many descriptors refer to it.
func rulePipes(container string, procs []*process) []Finding {
	withData := map[string]bool{}
	var first *process
	for _, p := range procs {
		for _, f := range p.fds {
			if strings.HasPrefix(f.target, "pipe:[") && f.pipeBytes > 0 && !withData[f.target] {
				withData[f.target] = true
				if first == nil {
					first = p
				}
			}
		}
	}
	if len(withData) <= MaxPipesWithData {
		return nil
	}
	names := make([]string, 0, len(withData))
	for name := range withData {
		names = append(names, name)
	}
	sort.Strings(names)
	s := scope{container: container}
	return []Finding{finding(s, first, lpmv1.ReasonTooManyPipesWithData, -1, names[0]+" and others",
		fmt.Sprintf("the container's processes hold %d pipes with unread data, and CRIU stores at most %d",
			len(withData), MaxPipesWithData),
		"let the readers drain their pipes, or hold fewer pipes")}
}

func versionString(n int) string {
	if n == 0 {
		return "(version unknown)"
	}
	return fmt.Sprintf("%d.%d.%d", n/10000, n/100%100, n%100)
}
