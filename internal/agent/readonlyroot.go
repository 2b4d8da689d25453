package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// checkReadOnlyRoot rejects a container whose root file system is read-only
// and has no /tmp directory, before the cut.
//
// CRIU restores a container's mount namespace by pivot_root into the
// directory "tmp" of the new root, and creates a temporary directory there
// when tmp is missing (cr_pivot_root in criu/mount.c, CRIU 4.2.1). On a
// read-only root that fails with "mnt: Can't create a temporary directory:
// Read-only file system". runc 1.1.15 and 1.3.6 hand CRIU the root as it
// is, and crun restores through the same CRIU code, so no runtime avoids
// it. A mount at /tmp, such as an emptyDir, serves as well: runc creates
// the mount point in the root before the restore.
func (a *Agent) checkReadOnlyRoot(ctx context.Context, pod *corev1.Pod, containers []podContainer) (
	lpmv1.Reason, error) {
	readOnly := map[string]bool{}
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		readOnly[c.Name] = c.SecurityContext != nil && c.SecurityContext.ReadOnlyRootFilesystem != nil &&
			*c.SecurityContext.ReadOnlyRootFilesystem
	}
	for _, c := range containers {
		if !readOnly[c.name] {
			continue
		}
		pid, err := a.runtime.TaskPID(ctx, c.id)
		if err != nil {
			return lpmv1.ReasonPodNotRunning, fmt.Errorf("container %s of pod %s: %w", c.name, pod.Name, err)
		}
		hasTmp, err := hasTmpDirectory(filepath.Join(a.opts.ProcRoot, strconv.FormatUint(uint64(pid), 10), "root"))
		if err != nil {
			return lpmv1.ReasonInternalError, fmt.Errorf("container %s of pod %s: %w", c.name, pod.Name, err)
		}
		if !hasTmp {
			return lpmv1.ReasonReadOnlyRootWithoutTmp, fmt.Errorf("container %s of pod %s sets "+
				"securityContext.readOnlyRootFilesystem, and its root file system has no /tmp directory: CRIU "+
				"restores a container by pivot_root into /tmp of its root and cannot create that directory on "+
				"a read-only root (\"mnt: Can't create a temporary directory: Read-only file system\"). Mount "+
				"an emptyDir at /tmp, add a /tmp directory to the image, or set readOnlyRootFilesystem to false",
				c.name, pod.Name)
		}
	}
	return "", nil
}

// hasTmpDirectory reports whether the root directory of a container, seen
// through /proc/<pid>/root, holds a directory named tmp. A symbolic link
// does not count: CRIU would resolve it against another root.
func hasTmpDirectory(root string) (bool, error) {
	info, err := os.Lstat(filepath.Join(root, "tmp"))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("failed to inspect /tmp of the container's root: %w", err)
	}
	return info.IsDir(), nil
}
