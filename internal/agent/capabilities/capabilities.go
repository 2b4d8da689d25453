// Package capabilities finds out what a node can checkpoint and restore:
// the runtime and its CRI configuration, CRIU and the OCI runtime (found
// through containerd's own process, because the agent's container and the
// runtime need not share a filesystem), the kernel, the cgroup version and
// the CPU's feature flags.
package capabilities

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/agent/runtime"
)

// minCRIUVersion is the oldest CRIU that containerd and CRI-O accept for
// pod checkpoints (go-criu's PodCriuVersion, 3.16).
const minCRIUVersion = 31600

// cpuFeatureLimit is how many CPU flags NodeCapabilities holds.
const cpuFeatureLimit = 512

// capSysResource is the bit of CAP_SYS_RESOURCE in a capability set.
const capSysResource = 24

// Host reads the node. Its fields default to the real paths.
type Host struct {
	// ProcRoot is where the agent sees the node's /proc (the agent runs
	// with the node's PID namespace).
	ProcRoot string
	// CgroupRoot is the cgroup mount.
	CgroupRoot string
	// CommandTimeout bounds each CRIU or runc command.
	CommandTimeout time.Duration
}

func (h Host) withDefaults() Host {
	if h.ProcRoot == "" {
		h.ProcRoot = "/proc"
	}
	if h.CgroupRoot == "" {
		h.CgroupRoot = "/sys/fs/cgroup"
	}
	if h.CommandTimeout == 0 {
		h.CommandTimeout = 10 * time.Second
	}
	return h
}

// Report is what Probe found.
type Report struct {
	Capabilities lpmv1.NodeCapabilities
	// CheckpointProblems and RestoreProblems explain why the node cannot
	// checkpoint or restore; empty when it can.
	CheckpointProblems []string
	RestoreProblems    []string
}

// criuFeatures are the optional features asked of CRIU. Which of them a
// migration needs depends on the process; the controller compares nodes.
var criuFeatures = []string{"mem_dirty_track", "uffd", "uffd-noncoop", "timens", "pidfd_store",
	"ns_last_pid", "memfd_hugetlb", "network_lock_nftables"}

// Probe inspects the runtime and the node.
func (h Host) Probe(ctx context.Context, rt *runtime.Runtime) (*Report, error) {
	h = h.withDefaults()
	info, err := rt.Info(ctx)
	if err != nil {
		return nil, err
	}
	report := &Report{}
	caps := &report.Capabilities
	caps.RuntimeName, caps.RuntimeVersion = info.Name, info.Version
	caps.KernelVersion = kernelRelease()
	caps.CgroupVersion = cgroupVersion(h.CgroupRoot)
	caps.CPUFeatures = cpuFeatures(filepath.Join(h.ProcRoot, "cpuinfo"))

	root, env, err := h.runtimeRoot(info)
	if err != nil {
		report.CheckpointProblems = append(report.CheckpointProblems, err.Error())
		report.RestoreProblems = append(report.RestoreProblems, err.Error())
	} else {
		h.probeTools(ctx, report, info, root, env)
		h.probeNode(report, root)
		caps.CheckpointNonRoot = hasCapability(filepath.Join(h.ProcRoot, strconv.FormatUint(info.Pid, 10),
			"status"), capSysResource)
	}

	if info.Name != "containerd" {
		problem := fmt.Sprintf("runtime %s is not supported; the agent pauses containers through containerd",
			info.Name)
		report.CheckpointProblems = append(report.CheckpointProblems, problem)
		report.RestoreProblems = append(report.RestoreProblems, problem)
	}
	if !info.CRIUEnabled {
		report.CheckpointProblems = append(report.CheckpointProblems, "the runtime's enable_criu is false")
		report.RestoreProblems = append(report.RestoreProblems, "the runtime's enable_criu is false")
	}
	if problem := restoreViaCreateProblem(info); problem != "" {
		report.RestoreProblems = append(report.RestoreProblems, problem)
	}
	return report, nil
}

// restoreViaCreateProblem says why containerd will not restore in
// CreateContainer: only 2.1 to 2.3 can, and 2.2 and 2.3 only with
// enable_experimental_restore_via_create.
func restoreViaCreateProblem(info *runtime.Info) string {
	major, minor, ok := parseMajorMinor(info.Version)
	if !ok {
		return fmt.Sprintf("cannot read containerd version %q", info.Version)
	}
	switch {
	case major < 2 || (major == 2 && minor < 1):
		return fmt.Sprintf("containerd %s predates restore from checkpoint images (2.1)", info.Version)
	case major > 2 || minor >= 4:
		return fmt.Sprintf("containerd %s removed restore from checkpoint images (2.4)", info.Version)
	case minor >= 2 && !info.RestoreViaCreate:
		return "containerd's enable_experimental_restore_via_create is false"
	}
	return ""
}

var versionPattern = regexp.MustCompile(`^v?(\d+)\.(\d+)`)

func parseMajorMinor(v string) (int, int, bool) {
	m := versionPattern.FindStringSubmatch(v)
	if m == nil {
		return 0, 0, false
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	return major, minor, true
}

// RuntimeRoot returns the root directory of containerd's process as the
// agent sees it, and containerd's PATH, without "PATH=".
func (h Host) RuntimeRoot(info *runtime.Info) (string, string, error) {
	root, env, err := h.withDefaults().runtimeRoot(info)
	if err != nil {
		return "", "", err
	}
	return root, strings.TrimPrefix(env[0], "PATH="), nil
}

// runtimeRoot returns the root directory and environment of containerd's
// process: CRIU and runc are whatever containerd's shims find there.
func (h Host) runtimeRoot(info *runtime.Info) (string, []string, error) {
	if info.Pid == 0 {
		return "", nil, errors.New("containerd did not report its process ID")
	}
	if info.PidNS != 0 {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(h.ProcRoot, "self/ns/pid"), &st); err == nil && st.Ino != info.PidNS {
			return "", nil, fmt.Errorf("the agent does not share containerd's PID namespace (%d); "+
				"run it with hostPID", info.PidNS)
		}
	}
	dir := filepath.Join(h.ProcRoot, strconv.FormatUint(info.Pid, 10))
	environ, err := os.ReadFile(filepath.Join(dir, "environ"))
	if err != nil {
		return "", nil, fmt.Errorf("failed to read containerd's environment: %w", err)
	}
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	for _, kv := range strings.Split(string(environ), "\x00") {
		if strings.HasPrefix(kv, "PATH=") {
			env[0] = kv
		}
	}
	return filepath.Join(dir, "root"), env, nil
}

func (h Host) probeTools(ctx context.Context, report *Report, info *runtime.Info, root string, env []string) {
	caps := &report.Capabilities
	out, err := h.run(ctx, root, env, "criu", "--version")
	if err != nil {
		problem := fmt.Sprintf("CRIU is not available to the runtime: %v", err)
		report.CheckpointProblems = append(report.CheckpointProblems, problem)
		report.RestoreProblems = append(report.RestoreProblems, problem)
	} else {
		caps.CRIUVersion = parseCRIUVersion(out)
		if n := criuVersionNumber(caps.CRIUVersion); n < minCRIUVersion {
			problem := fmt.Sprintf("CRIU %q is older than 3.16", caps.CRIUVersion)
			report.CheckpointProblems = append(report.CheckpointProblems, problem)
			report.RestoreProblems = append(report.RestoreProblems, problem)
		}
		// criu check mounts scratch file systems, which only works in the
		// runtime's own mount namespace: the node's nsenter enters it.
		pid := strconv.FormatUint(info.Pid, 10)
		for _, feature := range criuFeatures {
			if _, err := h.run(ctx, root, env, "nsenter", "--target", pid, "--mount", "--", "criu", "check",
				"--feature", feature); err == nil {
				caps.CRIUFeatures = append(caps.CRIUFeatures, feature)
			}
		}
	}

	binary := info.RuntimeBinary
	if binary == "" {
		binary = "runc"
	}
	caps.OCIRuntime = filepath.Base(binary)
	if out, err := h.run(ctx, root, env, binary, "--version"); err == nil {
		caps.OCIRuntimeVersion = firstVersion(out)
	}
}

// run executes a program of the runtime's filesystem with its PATH, in a
// child chrooted into that filesystem.
func (h Host) run(ctx context.Context, root string, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, h.CommandTimeout)
	defer cancel()
	path := name
	if !strings.HasPrefix(name, "/") {
		found, err := lookPathIn(root, env[0], name)
		if err != nil {
			return "", err
		}
		path = found
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = env
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s failed: %w: %s", name, strings.Join(args, " "), err,
			strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func lookPathIn(root, pathEnv, name string) (string, error) {
	for _, dir := range strings.Split(strings.TrimPrefix(pathEnv, "PATH="), ":") {
		if !strings.HasPrefix(dir, "/") {
			continue
		}
		candidate := filepath.Join(dir, name)
		if info, err := os.Stat(filepath.Join(root, candidate)); err == nil && info.Mode().IsRegular() &&
			info.Mode()&0o111 != 0 {
			return candidate, nil
		}
	}
	return "", fmt.Errorf("%s not found in the runtime's PATH", name)
}

var criuVersionPattern = regexp.MustCompile(`Version:\s*(\d+\.\d+(?:\.\d+)?)`)

func parseCRIUVersion(out string) string {
	if m := criuVersionPattern.FindStringSubmatch(out); m != nil {
		return m[1]
	}
	return strings.TrimSpace(out)
}

// criuVersionNumber turns 4.1.1 into 40101, CRIU's own numbering.
func criuVersionNumber(v string) int {
	parts := strings.SplitN(v, ".", 3)
	n := 0
	for i, mult := range []int{10000, 100, 1} {
		if i < len(parts) {
			x, err := strconv.Atoi(parts[i])
			if err != nil {
				return 0
			}
			n += x * mult
		}
	}
	return n
}

var firstVersionPattern = regexp.MustCompile(`\d+\.\d+(?:\.\d+)?[^\s]*`)

func firstVersion(out string) string {
	line, _, _ := strings.Cut(out, "\n")
	if m := firstVersionPattern.FindString(line); m != "" {
		return m
	}
	return strings.TrimSpace(line)
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

func cgroupVersion(root string) int32 {
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return 0
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return 2
	}
	return 1
}

// cpuFeatures returns the sorted CPU flags of the first processor in
// cpuinfo ("flags" on x86, "Features" on arm64).
func cpuFeatures(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer func() { _ = f.Close() }()
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 64<<10), 1<<20)
	for scanner.Scan() {
		key, value, ok := strings.Cut(scanner.Text(), ":")
		if !ok {
			continue
		}
		key = strings.TrimSpace(key)
		if key != "flags" && key != "Features" {
			continue
		}
		seen := map[string]bool{}
		var flags []string
		for _, flag := range strings.Fields(value) {
			if !seen[flag] && len(flag) <= 64 {
				seen[flag] = true
				flags = append(flags, flag)
			}
		}
		sort.Strings(flags)
		if len(flags) > cpuFeatureLimit {
			flags = flags[:cpuFeatureLimit]
		}
		return flags
	}
	return nil
}

// hasCapability reports whether a process's effective set holds a bit.
func hasCapability(statusPath string, bit uint) bool {
	data, err := os.ReadFile(statusPath)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if value, ok := strings.CutPrefix(line, "CapEff:"); ok {
			set, err := strconv.ParseUint(strings.TrimSpace(value), 16, 64)
			return err == nil && set&(1<<bit) != 0
		}
	}
	return false
}
