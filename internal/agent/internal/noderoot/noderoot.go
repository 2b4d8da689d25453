// Package noderoot runs a real containerd for the agent's integration
// tests inside a Debian root (hack/components.sh node-root) that provides
// runc and CRIU 4.x. containerd runs in its own mount namespace, pivoted
// into an overlay of that root with a fresh /proc and /sys, a tmpfs /dev
// with device nodes and a new devpts instance, so containerd, runc and
// CRIU see one filesystem. containerd shares the host's network namespace,
// so it reaches the test's loopback servers. Pods get network namespaces of
// their own on a bridge of their node, which has no address on the host
// side, so pod traffic reaches nothing else.
//
// The test reaches containerd through a socket under the node's state
// directory. Stop (registered with t.Cleanup) kills every container and
// containerd, and removes the node's cgroups, bridge and state.
package noderoot

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"
)

//go:embed setup.sh
var setupScript string

//go:embed config.toml.tmpl
var configTemplate string

// Config describes a node.
type Config struct {
	// Name is a short unique name; it prefixes the node's cgroups.
	Name string
	// SandboxImage is the pause image the CRI plugin uses for sandboxes.
	SandboxImage string
	// Registry, when set, is a host:port on loopback that containerd
	// reaches over plain HTTP.
	Registry string
	// RootSize, when set, puts containerd's root directory on a tmpfs of
	// this many bytes, so tests can fill the disk.
	RootSize int64
	// RestoreViaCreate sets enable_experimental_restore_via_create.
	RestoreViaCreate bool
	// DisableCRIU sets enable_criu = false.
	DisableCRIU bool
}

// Node is a running containerd in a node root.
type Node struct {
	// Dir is the node's state directory on the host.
	Dir string
	// Socket is containerd's socket on the host.
	Socket string
	// LogDir is the host directory mounted at /var/log/lpm in the node;
	// pods' log directories go there.
	LogDir string
	// CgroupParent is the cgroup under which pods of this node run.
	CgroupParent string
	// Bridge is the host's bridge device of the pods' network.
	Bridge  string
	cfg     Config
	cmd     *exec.Cmd
	logFile *os.File
	// releaseThread ends the OS thread that started containerd.
	releaseThread chan struct{}
}

// ContainerdLog returns containerd's log so far.
func (n *Node) ContainerdLog() string {
	data, _ := os.ReadFile(filepath.Join(n.Dir, "containerd.log"))
	return string(data)
}

// RequireComponents returns the node root and the containerd binaries, or
// skips the test, naming what is missing, when the test cannot run here.
func RequireComponents(t testing.TB) (rootfs, bin, cni string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: the node root needs root (mount namespaces, cgroups, CRIU)")
	}
	rootfs = componentPath(t, "node-root")
	bin = componentPath(t, "containerd")
	cni = componentPath(t, "cni-plugins")
	for _, p := range []string{filepath.Join(rootfs, "usr/sbin/criu"), filepath.Join(bin, "containerd"),
		filepath.Join(cni, "loopback")} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("skipping: %s is missing; run hack/components.sh node-root containerd cni-plugins", p)
		}
	}
	return rootfs, bin, cni
}

func componentPath(t testing.TB, component string) string {
	t.Helper()
	script, err := findComponentsScript()
	if err != nil {
		t.Skipf("skipping: %v", err)
	}
	out, err := exec.Command(script, "path", component).Output()
	if err != nil {
		t.Skipf("skipping: %s path %s failed: %v", script, component, err)
	}
	dir := strings.TrimSpace(string(out))
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), ".done")); err != nil {
		t.Skipf("skipping: component %s is not built (no %s/.done); run hack/components.sh %s",
			component, filepath.Dir(dir), component)
	}
	return dir
}

func findComponentsScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		candidate := filepath.Join(dir, "hack", "components.sh")
		if _, err := os.Stat(candidate); err == nil {
			return candidate, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("hack/components.sh not found above the working directory")
		}
		dir = parent
	}
}

// Start starts containerd in a new node root and stops it when the test
// ends.
func Start(t testing.TB, cfg Config) *Node {
	t.Helper()
	rootfs, bin, cni := RequireComponents(t)

	sweepAbandoned(t)
	// The socket path must stay short: unix socket paths are limited to
	// 108 bytes.
	dir, err := os.MkdirTemp("/tmp", "lpmag-"+cfg.Name+"-")
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{Dir: dir, Socket: filepath.Join(dir, "sock", "containerd.sock"),
		LogDir: filepath.Join(dir, "logs"), CgroupParent: "/" + filepath.Base(dir), cfg: cfg}
	suffix := fmt.Sprintf("%06x", rand.Uint32()&0xffffff)
	n.Bridge = "lpmagb" + suffix
	owner := fmt.Sprintf("%d %s\n", os.Getpid(), n.Bridge)
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(owner), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop(t) })

	for _, sub := range []string{"sock", "logs", "etc/certs.d", "containerd", "upper", "work", "root"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.writeConfig(); err != nil {
		t.Fatal(err)
	}

	n.logFile, err = os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	rootSize := ""
	if cfg.RootSize > 0 {
		rootSize = fmt.Sprint(cfg.RootSize)
	}
	n.cmd = exec.Command("unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", setupScript,
		"setup")
	n.cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "NODE_DIR=" + dir, "ROOTFS=" + rootfs,
		"BIN=" + bin, "CNI=" + cni, "ROOT_SIZE=" + rootSize, "BRIDGE=" + n.Bridge,
		"SUBNET=" + fmt.Sprintf("10.231.%d.0/24", rand.IntN(256)), "CRIU_LOG=" + os.Getenv("LPMAG_CRIU_LOG")}
	n.cmd.Stdout, n.cmd.Stderr = n.logFile, n.logFile
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.startOnOwnThread(); err != nil {
		t.Fatalf("failed to start the node root: %v", err)
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(n.Socket); err == nil {
			break
		}
		if n.cmd.ProcessState != nil || time.Now().After(deadline) {
			t.Fatalf("containerd did not create %s within 30s; log:\n%s", n.Socket, n.ContainerdLog())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return n
}

// startOnOwnThread starts the node's command from an OS thread that lives
// until Stop. The kernel sends Pdeathsig when the thread that forked the
// child exits, not the process, and the Go runtime ends a thread whose
// goroutine exits while locked to it, as code that enters another
// namespace does. Started from any thread, containerd could die with one.
func (n *Node) startOnOwnThread() error {
	started := make(chan error, 1)
	release := make(chan struct{})
	n.releaseThread = release
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		started <- n.cmd.Start()
		<-release
	}()
	return <-started
}

func (n *Node) writeConfig() error {
	tmpl, err := template.New("config").Parse(configTemplate)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, n.cfg); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(n.Dir, "etc"), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(n.Dir, "etc", "config.toml"), buf.Bytes(), 0o600); err != nil {
		return err
	}
	if n.cfg.Registry == "" {
		return nil
	}
	hosts := fmt.Sprintf("server = \"http://%[1]s\"\n\n[host.\"http://%[1]s\"]\n  capabilities = "+
		"[\"pull\", \"resolve\"]\n", n.cfg.Registry)
	hostDir := filepath.Join(n.Dir, "etc", "certs.d", n.cfg.Registry)
	if err := os.MkdirAll(hostDir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(hostDir, "hosts.toml"), []byte(hosts), 0o600)
}

// Stop kills containerd, every process in the node's cgroups, and removes
// the node's mounts, cgroups and state directory.
func (n *Node) Stop(t testing.TB) {
	t.Helper()
	if n.cmd != nil && n.cmd.Process != nil {
		// The shell that unshare started execs containerd, so this kills
		// containerd. Shims and containers outlive it and are killed below.
		_ = n.cmd.Process.Kill()
		_ = n.cmd.Wait()
	}
	if n.releaseThread != nil {
		close(n.releaseThread)
		n.releaseThread = nil
	}
	killCgroups(t, n.CgroupParent)
	killShims(t, n.Dir)
	if n.Bridge != "" {
		if out, err := exec.Command("ip", "link", "del", n.Bridge).CombinedOutput(); err != nil &&
			!strings.Contains(string(out), "Cannot find device") {
			t.Errorf("failed to delete bridge %s: %v: %s", n.Bridge, err, out)
		}
	}
	if n.logFile != nil {
		_ = n.logFile.Close()
	}
	if t.Failed() {
		t.Logf("containerd log of node %s (last 8 KiB):\n%s", n.cfg.Name, tail(n.ContainerdLog(), 8<<10))
	}
	// Mounts lived in the node's mount namespace, which is gone with its
	// last process; the state directory holds plain files now.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, sub := range []string{"containerd", "root"} {
		_ = exec.CommandContext(ctx, "umount", "-R", filepath.Join(n.Dir, sub)).Run()
	}
	if err := os.RemoveAll(n.Dir); err != nil {
		t.Errorf("failed to remove node state %s: %v", n.Dir, err)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
