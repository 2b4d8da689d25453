package capabilities

import (
	"errors"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/criuconfig"
)

// CRIUConfigPaths are the CRIU configuration files the agent reports, as
// paths in the runtime's filesystem. runc passes runc.conf to CRIU for every
// checkpoint and restore. CRIU reads default.conf when it runs from the
// command line.
var CRIUConfigPaths = []string{"/etc/criu/runc.conf", "/etc/criu/default.conf"}

// maxConfigBytes bounds a CRIU configuration file read into memory.
const maxConfigBytes = 64 << 10

// Minimum versions for restoring rseq: PTRACE_GET_RSEQ_CONFIGURATION came
// with Linux 5.13 and CRIU's use of it with CRIU 3.17.
const (
	minRseqKernelMajor = 5
	minRseqKernelMinor = 13
	minRseqCRIUVersion = 31700
)

// probeNode adds what the node's CRIU configuration, kernel and OCI runtime
// decide about restores: the configuration files, rseq support and whether
// a restore lands in the new container's cgroup. The controller compares
// them between source and target (criuconfig.Problem among them), so none of
// them marks the node unable on its own.
func (h Host) probeNode(report *Report, root string) {
	caps := &report.Capabilities
	caps.CRIUConfig = readCRIUConfig(root)
	caps.TCPClose = criuconfig.ClosesTCP(caps.CRIUConfig)
	caps.RseqRestore = rseqRestore(caps.KernelVersion, criuVersionNumber(caps.CRIUVersion), kernelHasRseq())
	newCgroup := restoreIntoNewCgroup(caps.OCIRuntime, caps.OCIRuntimeVersion, caps.CRIUConfig)
	caps.RestoreIntoNewCgroup = &newCgroup
}

func readCRIUConfig(root string) []lpmv1.CRIUConfigFile {
	var out []lpmv1.CRIUConfigFile
	for _, path := range CRIUConfigPaths {
		f, err := os.Open(filepath.Join(root, path))
		if err != nil {
			continue
		}
		data := make([]byte, maxConfigBytes)
		n, _ := f.Read(data)
		_ = f.Close()
		out = append(out, lpmv1.CRIUConfigFile{Path: path, Options: criuconfig.Parse(string(data[:n]))})
	}
	return out
}

// rseqRestore decides whether CRIU can dump and restore a process that
// registered rseq.
func rseqRestore(kernel string, criuVersion int, hasRseq bool) bool {
	if !hasRseq || criuVersion < minRseqCRIUVersion {
		return false
	}
	major, minor, ok := parseMajorMinor(kernel)
	return ok && (major > minRseqKernelMajor || (major == minRseqKernelMajor && minor >= minRseqKernelMinor))
}

// kernelHasRseq calls rseq with no area: a kernel with the system call
// rejects the arguments with EINVAL, one without it returns ENOSYS.
func kernelHasRseq() bool {
	_, _, errno := unix.Syscall6(unix.SYS_RSEQ, 0, 0, 0, 0, 0, 0)
	return !errors.Is(errno, unix.ENOSYS)
}

// restoreIntoNewCgroup decides whether a restore lands in the new
// container's cgroup. runc (1.0 and later) and crun (1.0 and later) pass
// the new container's cgroup paths to CRIU; a configuration that sets
// manage-cgroups to ignore, or a cgroup-root, overrides them.
// NOTE: versions of runc and crun before 1.0 were not tested and are
// reported as unable.
func restoreIntoNewCgroup(ociRuntime, version string, config []lpmv1.CRIUConfigFile) bool {
	if mode, set := criuconfig.Option(config, "manage-cgroups"); set && mode == "ignore" {
		return false
	}
	if _, set := criuconfig.Option(config, "cgroup-root"); set {
		return false
	}
	if ociRuntime != "runc" && ociRuntime != "crun" {
		return false
	}
	major, _, ok := parseMajorMinor(version)
	return ok && major >= 1
}
