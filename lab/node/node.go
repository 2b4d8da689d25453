// Package node runs one lab node: a Debian root with its own mount, UTS,
// IPC, network and (optionally) PID namespaces, attached to the lab's
// bridge, with per-node state directories, its own cgroup root and its own
// containerd. Every name and address comes from the lab instance, so nodes
// of different labs never share anything.
//
// A Go test gets a node with containerd in a few lines (as root, with the
// components built by hack/components.sh):
//
//	inst, _ := instance.New("t1", t.TempDir())
//	n := node.StartForTest(t, node.Config{Instance: inst, Index: 0})
//	if err := n.StartContainerd(ctx, node.ContainerdConfig{}); err != nil { ... }
//	client, _ := containerd.New(n.ContainerdSocket()) // dial from the host
//	out, err := n.Output(ctx, "criu", "check")            // run inside the node
//
// StartForTest stops the node, and removes the bridge once no node of the
// lab uses it, when the test ends. Outside tests, Start and Stop do the same
// and Open attaches to a node that another process started.
//
// The node's root is an overlay of the read-only Debian root, so nothing a
// node changes reaches the cache or another node. Inside the node, the
// component cache, the node's configuration directory and the lab's image
// directory appear at their host paths; containerd, the kubelet and the CNI
// plugins keep their state under the node's state directory.
package node

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/lpm-dev/lpm/lab/cgroups"
	"github.com/lpm-dev/lpm/lab/instance"
	"github.com/lpm-dev/lpm/lab/network"
	"github.com/lpm-dev/lpm/lab/proc"
)

//go:embed setup.sh
var setupScript string

// nodePath is the PATH of processes started inside a node.
const nodePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Config describes a node to start.
type Config struct {
	// Instance is the lab the node belongs to.
	Instance instance.Instance
	// Index selects the node's name, address, pod CIDR and cgroup root.
	Index int
	// RootFS is the read-only Debian root. Empty means
	// `hack/components.sh path node-root`.
	RootFS string
	// CacheDir is the component cache, bound read-only into the node at
	// the same path. Empty means $LPM_CACHE or ~/.cache/lpm.
	CacheDir string
	// HostPIDNamespace keeps the node's processes in the host's PID
	// namespace. By default each node has its own, so a hostPID pod sees
	// only its node's processes and stopping the node ends all of them.
	HostPIDNamespace bool
	// Binds are extra directories or files bound into the node.
	Binds []Bind
	// Hosts are extra lines for the node's /etc/hosts.
	Hosts []string
	// CRIUConfig is the content of the node's /etc/criu/runc.conf, which
	// runc passes to CRIU for every checkpoint and restore. Empty means
	// DefaultCRIUConfig.
	CRIUConfig string
}

// DefaultCRIUConfig is the CRIU configuration that lpm requires of every node.
// tcp-close lets CRIU dump a process with established TCP connections and
// closes them at the restore, where the pod has a new address anyway.
// skip-in-flight drops connections that reached a listening socket of the
// frozen pod (a probe's) and were not accepted yet, which CRIU fails on
// otherwise ("In-flight connection").
const DefaultCRIUConfig = "tcp-close\nskip-in-flight\n"

// Bind is a directory or file of the host bound into a node.
type Bind struct {
	Source   string
	Target   string
	ReadOnly bool
}

// Node is a running lab node.
type Node struct {
	cfg    Config
	anchor proc.Process
}

// Dir is the node's state directory on the host.
func (n *Node) Dir() string { return n.cfg.Instance.NodeDir(n.cfg.Index) }

// Name is the node's host name and Kubernetes node name.
func (n *Node) Name() string { return n.cfg.Instance.NodeName(n.cfg.Index) }

// IP is the node's address on the lab bridge.
func (n *Node) IP() netip.Addr { return n.cfg.Instance.NodeIP(n.cfg.Index) }

// PodCIDR is the range the node's pods get addresses from.
func (n *Node) PodCIDR() netip.Prefix { return n.cfg.Instance.PodCIDR(n.cfg.Index) }

// CgroupRoot is the node's cgroup root, relative to each hierarchy.
func (n *Node) CgroupRoot() string { return n.cfg.Instance.CgroupRoot(n.cfg.Index) }

// PID is the host PID of the node's anchor process, which holds the node's
// namespaces.
func (n *Node) PID() int { return n.anchor.PID }

// Config returns the configuration the node was started with.
func (n *Node) Config() Config { return n.cfg }

// ConfigDir is bound into the node at the same path. Kubelet and
// kube-proxy configurations and the node's certificates live here.
func (n *Node) ConfigDir() string { return filepath.Join(n.Dir(), "config") }

// LogDir holds the logs of the node's daemons on the host.
func (n *Node) LogDir() string { return filepath.Join(n.Dir(), "logs") }

// HostPath returns the host path of a path inside the node, through the
// anchor's root. It stays valid while the node runs.
func (n *Node) HostPath(p string) string {
	return filepath.Join(fmt.Sprintf("/proc/%d/root", n.anchor.PID), p)
}

func (n *Node) anchorFile() string { return filepath.Join(n.Dir(), "anchor.pid") }

func (cfg *Config) setDefaults() error {
	if cfg.CacheDir == "" {
		cfg.CacheDir = DefaultCacheDir()
	}
	if cfg.RootFS == "" {
		dir, err := ComponentPath("node-root")
		if err != nil {
			return err
		}
		cfg.RootFS = dir
	}
	if cfg.Index < 0 || cfg.Index >= instance.MaxNodes {
		return fmt.Errorf("invalid node index %d: want 0 to %d", cfg.Index, instance.MaxNodes-1)
	}
	return nil
}

// Start creates the node's cgroup root, namespaces, root and network, and
// returns once the node's root is in place. A node of the same name that
// still runs, or remains of one, are removed first.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(cfg.RootFS, "usr/sbin/criu")); err != nil {
		return nil, fmt.Errorf("invalid node root %s: no criu: %w; run hack/components.sh node-root", cfg.RootFS, err)
	}
	n := &Node{cfg: cfg}
	if err := n.Stop(); err != nil {
		return nil, fmt.Errorf("failed to remove the remains of node %s: %w", n.Name(), err)
	}
	for _, d := range []string{"containerd", "kubelet", "pod-logs", "cni/net.d", "cni/lib", "etc-containerd",
		"config", "logs", "upper", "work"} {
		if err := os.MkdirAll(filepath.Join(n.Dir(), d), 0o755); err != nil {
			return nil, fmt.Errorf("failed to create node directory: %w", err)
		}
	}
	if err := n.writeCRIUConfig(); err != nil {
		return nil, err
	}
	if err := cgroups.Create(n.CgroupRoot()); err != nil {
		return nil, err
	}
	if err := network.EnsureBridge(cfg.Instance); err != nil {
		return nil, err
	}
	if err := n.startAnchor(ctx); err != nil {
		return nil, errors.Join(err, n.Stop())
	}
	if err := n.setupNetwork(ctx); err != nil {
		return nil, errors.Join(err, n.Stop())
	}
	return n, nil
}

// writeCRIUConfig writes /etc/criu/runc.conf into the upper layer of the
// node's root before the root is mounted.
func (n *Node) writeCRIUConfig() error {
	content := n.cfg.CRIUConfig
	if content == "" {
		content = DefaultCRIUConfig
	}
	dir := filepath.Join(n.Dir(), "upper", "etc", "criu")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("failed to create the CRIU configuration directory of node %s: %w", n.Name(), err)
	}
	if err := os.WriteFile(filepath.Join(dir, "runc.conf"), []byte(content), 0o644); err != nil {
		return fmt.Errorf("failed to write the CRIU configuration of node %s: %w", n.Name(), err)
	}
	return nil
}

// Open attaches to node index of a lab, started by this or another process.
func Open(cfg Config) (*Node, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg}
	p, err := proc.ReadFile(n.anchorFile())
	if err != nil {
		return nil, fmt.Errorf("failed to find node %s: %w", n.Name(), err)
	}
	if !p.Alive() {
		return nil, fmt.Errorf("node %s is not running (anchor process %d is gone)", n.Name(), p.PID)
	}
	n.anchor = p
	return n, nil
}

// Handle returns a node for cfg without starting or finding it. Its Stop
// removes whatever remains of the node.
func Handle(cfg Config) *Node {
	return &Node{cfg: cfg}
}

func (n *Node) binds() []Bind {
	cfg := n.cfg
	d := n.Dir()
	binds := []Bind{
		{Source: cfg.CacheDir, Target: cfg.CacheDir, ReadOnly: true},
		{Source: filepath.Join(d, "config"), Target: filepath.Join(d, "config"), ReadOnly: true},
		{Source: filepath.Join(d, "containerd"), Target: "/var/lib/containerd"},
		{Source: filepath.Join(d, "etc-containerd"), Target: "/etc/containerd", ReadOnly: true},
		{Source: filepath.Join(d, "kubelet"), Target: "/var/lib/kubelet"},
		{Source: filepath.Join(d, "pod-logs"), Target: "/var/log/pods"},
		{Source: filepath.Join(d, "cni/net.d"), Target: "/etc/cni/net.d", ReadOnly: true},
		{Source: filepath.Join(d, "cni/lib"), Target: "/var/lib/cni"},
	}
	if dir, err := ComponentPath("cni-plugins"); err == nil {
		binds = append(binds, Bind{Source: dir, Target: "/opt/cni/bin", ReadOnly: true})
	}
	if _, err := os.Stat(cfg.Instance.ImagesDir()); err == nil {
		binds = append(binds, Bind{Source: cfg.Instance.ImagesDir(), Target: cfg.Instance.ImagesDir(), ReadOnly: true})
	}
	return append(binds, cfg.Binds...)
}

func (n *Node) startAnchor(ctx context.Context) error {
	var binds strings.Builder
	for _, b := range n.binds() {
		if strings.ContainsAny(b.Source+b.Target, " \n") {
			return fmt.Errorf("invalid bind %s -> %s: paths must not contain spaces", b.Source, b.Target)
		}
		mode := "rw"
		if b.ReadOnly {
			mode = "ro"
		}
		fmt.Fprintf(&binds, "%s %s %s\n", b.Source, b.Target, mode)
	}
	hosts := []string{"127.0.0.1 localhost", "::1 localhost", fmt.Sprintf("%s %s", n.IP(), n.Name())}
	hosts = append(hosts, n.cfg.Hosts...)

	ready, readyW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("failed to create pipe: %w", err)
	}
	defer func() { _ = ready.Close() }()
	flags := syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWNET
	if !n.cfg.HostPIDNamespace {
		flags |= syscall.CLONE_NEWPID
	}
	p, err := proc.Start(proc.Spec{
		Args: []string{"/bin/sh", "-c", setupScript, "setup"},
		Env: []string{
			"NODE_NAME=" + n.Name(),
			"LOWER=" + n.cfg.RootFS,
			"UPPER=" + filepath.Join(n.Dir(), "upper"),
			"WORK=" + filepath.Join(n.Dir(), "work"),
			"ROOT=" + filepath.Join(n.Dir(), "rootfs"),
			"BINDS=" + binds.String(),
			"HOSTS=" + strings.Join(hosts, "\n"),
		},
		LogFile:     filepath.Join(n.LogDir(), "anchor.log"),
		PIDFile:     n.anchorFile(),
		SysProcAttr: &syscall.SysProcAttr{Setsid: true, Cloneflags: uintptr(flags)},
		ExtraFiles:  []*os.File{readyW},
	})
	_ = readyW.Close()
	if err != nil {
		return err
	}
	n.anchor = p

	// The script writes "ready" after pivot_root; EOF without it means the
	// script failed, and its log says where.
	deadline := time.Now().Add(30 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = ready.SetReadDeadline(deadline)
	buf := make([]byte, 16)
	nr, _ := ready.Read(buf)
	if strings.TrimSpace(string(buf[:nr])) != "ready" {
		logData, _ := os.ReadFile(filepath.Join(n.LogDir(), "anchor.log"))
		return fmt.Errorf("failed to set up the root of node %s: %s", n.Name(), lastLines(string(logData), 10))
	}
	return nil
}

func (n *Node) setupNetwork(ctx context.Context) error {
	in := n.cfg.Instance
	if err := network.AttachNode(ctx, in, n.cfg.Index, n.anchor.PID); err != nil {
		return err
	}
	return nil
}

// Stop ends every process of the node, removes its network interface and
// its cgroup root. The node's state directory stays; RemoveState deletes
// it. Stop on a node that is not running removes what remains of it.
func (n *Node) Stop() error {
	var errs []error
	// A container that a migration left paused would outlive SIGKILL.
	cgroups.Thaw(n.CgroupRoot())
	p, err := proc.ReadFile(n.anchorFile())
	switch {
	case err == nil:
		errs = append(errs, n.killAll(p))
		if err := os.Remove(n.anchorFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		errs = append(errs, err)
	}
	// Processes of the node that escaped the namespaces still sit in its
	// cgroups (containers of a node without a PID namespace, for one).
	errs = append(errs, cgroups.Remove(n.CgroupRoot()))
	errs = append(errs, network.DetachNode(n.cfg.Instance, n.cfg.Index))
	return errors.Join(errs...)
}

// killAll kills the anchor and every process that shares its mount
// namespace. With a PID namespace, killing the anchor alone ends them all.
func (n *Node) killAll(anchor proc.Process) error {
	if !anchor.Alive() {
		return nil
	}
	mnt, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", anchor.PID))
	if err != nil {
		return anchor.Kill()
	}
	pids, err := proc.All()
	if err != nil {
		return err
	}
	var errs []error
	for _, pid := range pids {
		if pid == anchor.PID {
			continue
		}
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); err == nil && ns == mnt {
			if p, err := proc.Lookup(pid); err == nil {
				errs = append(errs, p.Kill())
			}
		}
	}
	errs = append(errs, anchor.Kill())
	return errors.Join(errs...)
}

// RemoveState deletes the node's state directory. The node must be stopped.
func (n *Node) RemoveState() error {
	if err := os.RemoveAll(n.Dir()); err != nil {
		return fmt.Errorf("failed to remove the state of node %s: %w", n.Name(), err)
	}
	return nil
}

// Command returns a command that runs inside the node: in its namespaces,
// under its root, with the component directories on PATH.
func (n *Node) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", n.nsenterArgs(name, args)...)
}

func (n *Node) nsenterArgs(name string, args []string) []string {
	out := []string{"-t", fmt.Sprint(n.anchor.PID), "-m", "-u", "-i", "-n", "-r", "-w"}
	if !n.cfg.HostPIDNamespace {
		out = append(out, "-p")
	}
	path := nodePath
	for _, c := range []string{"containerd", "kubelet", "kube-proxy", "kubectl"} {
		if dir, err := ComponentPath(c); err == nil {
			path = dir + ":" + path
		}
	}
	out = append(out, "--", "/usr/bin/env", "-i", "PATH="+path, "HOME=/root", name)
	return append(out, args...)
}

// Output runs a command inside the node and returns its standard output.
// The error includes the standard error.
func (n *Node) Output(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := n.Command(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s on node %s failed: %w: %s", name, strings.Join(args, " "), n.Name(), err,
			strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// StartDaemon starts a long-running process inside the node, logging to
// LogDir()/NAME.log and recording its PID in the node's state directory.
// It returns the process itself, not the nsenter that started it.
func (n *Node) StartDaemon(name string, args ...string) (proc.Process, error) {
	_ = n.StopDaemon(name, 0)
	launcher, err := proc.Start(proc.Spec{
		Args:    append([]string{"nsenter"}, n.nsenterArgs(args[0], args[1:])...),
		LogFile: filepath.Join(n.LogDir(), name+".log"),
	})
	if err != nil {
		return proc.Process{}, err
	}
	// nsenter forks to enter the PID namespace; the daemon is its child.
	target := launcher
	if !n.cfg.HostPIDNamespace {
		target, err = waitChild(launcher, 5*time.Second)
		if err != nil {
			return proc.Process{}, fmt.Errorf("failed to start %s on node %s: %w", name, n.Name(), err)
		}
	}
	if err := target.WriteFile(n.daemonFile(name)); err != nil {
		return target, err
	}
	return target, nil
}

func waitChild(parent proc.Process, timeout time.Duration) (proc.Process, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		children, _ := proc.Children(parent.PID)
		if len(children) > 0 {
			return proc.Lookup(children[0])
		}
		if !parent.Alive() {
			return proc.Process{}, fmt.Errorf("nsenter (PID %d) exited", parent.PID)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return proc.Process{}, fmt.Errorf("nsenter (PID %d) started no process within %s", parent.PID, timeout)
}

func (n *Node) daemonFile(name string) string { return filepath.Join(n.Dir(), name+".pid") }

// Daemon returns the daemon NAME started by StartDaemon, if it still runs.
func (n *Node) Daemon(name string) (proc.Process, bool) {
	p, err := proc.ReadFile(n.daemonFile(name))
	if err != nil || !p.Alive() {
		return proc.Process{}, false
	}
	return p, true
}

// StopDaemon stops daemon NAME: SIGTERM, and SIGKILL after grace (at once
// when grace is 0).
func (n *Node) StopDaemon(name string, grace time.Duration) error {
	return proc.StopFile(n.daemonFile(name), grace)
}

func lastLines(s string, count int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > count {
		lines = lines[len(lines)-count:]
	}
	return strings.Join(lines, "\n")
}
