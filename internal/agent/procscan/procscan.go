// Package procscan reads the processes of a pod's containers from /proc
// before the checkpoint and finds what the node's CRIU cannot dump or
// restore: io_uring instances, inotify and fanotify watches on overlay
// file systems, pidfds, POSIX message queues, a controlling terminal,
// deleted files above CRIU's ghost-file limit, System V shared memory of
// the host's IPC namespace, more pipes with unread data than CRIU stores,
// and a container whose cgroup is already frozen.
//
// Each rule is a function over what the scanner read, so tests run it over
// a /proc tree they build. Whether a rule applies depends on the CRIU
// version (see Policy).
package procscan

import (
	"fmt"
	"strings"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// Finding is one object that would make the checkpoint or the restore fail.
type Finding struct {
	// Reason is the typed reason the migration fails with.
	Reason lpmv1.Reason
	// Container is the container's name in the pod.
	Container string
	// PID is the process ID in the node's PID namespace, and Command its name.
	PID     int
	Command string
	// FD is the file descriptor, or -1 when the object is not one (a
	// mapping, the terminal, the cgroup).
	FD int
	// Object names the object: the descriptor's link target, a mapping's
	// path or a cgroup.
	Object string
	// Problem states what CRIU cannot do with it, and Fix what the user can do.
	Problem string
	Fix     string
}

// Message is the finding as one sentence for a condition message.
func (f Finding) Message() string {
	var b strings.Builder
	fmt.Fprintf(&b, "container %s, process %d (%s)", f.Container, f.PID, f.Command)
	if f.FD >= 0 {
		fmt.Fprintf(&b, ", fd %d", f.FD)
	}
	if f.Object != "" {
		fmt.Fprintf(&b, " (%s)", f.Object)
	}
	fmt.Fprintf(&b, ": %s. Fix: %s", f.Problem, f.Fix)
	return b.String()
}

// Result is the outcome of one scan.
type Result struct {
	// Processes and FileDescriptors count what the scan read.
	Processes       int
	FileDescriptors int
	// Findings lists every object found, in the order of the containers,
	// their processes and their descriptors.
	Findings []Finding
}

// Message joins the first findings into one message, with the number of
// findings left out.
func (r *Result) Message(maxShown int) string {
	if len(r.Findings) == 0 {
		return ""
	}
	var parts []string
	for i, f := range r.Findings {
		if i == maxShown {
			parts = append(parts, fmt.Sprintf("and %d more findings", len(r.Findings)-maxShown))
			break
		}
		parts = append(parts, f.Message())
	}
	return strings.Join(parts, "; ")
}
