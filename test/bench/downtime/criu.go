package downtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/lpm-dev/lpm/lab/node"
	"github.com/lpm-dev/lpm/test/bench/results"
)

// Stage names of the runc measurements.
const (
	StageRuncCheckpoint = "runc checkpoint"
	StageRuncRestore    = "runc restore"
	StageCopyImages     = "copy other images"
	StageCRIUFloor      = "CRIU floor"
	StagePageServer     = "page server total"
	// pageServerPort is the CRIU page server's port on the target node's
	// address; the lab's nodes have network namespaces of their own.
	pageServerPort = 27017
)

// bundleBase is the directory inside each node that holds the benchmarks'
// runc bundles, on the node's disk. The CRIU images go to the node's /tmp,
// a tmpfs, where containerd's checkpoint puts CRIU's images too.
const (
	bundleBase = "/var/lib/lpm-bench/bundles"
	imageBase  = "/tmp/lpm-bench-criu"
)

// runcContainer is one randmem process that runc runs directly in a node,
// outside Kubernetes. Its standard streams are pipes, as containerd's shim
// gives a container, because CRIU dumps and restores pipes but not a
// terminal or a file of the node.
type runcContainer struct {
	id     string
	bundle string
	nodes  []*node.Node
	stdin  *os.File
	stdout *os.File
}

// newRuncContainer writes the bundle on each node: the same root file
// system at the same path, and a configuration that puts the process into
// a cgroup under that node's cgroup root.
func (r *Runner) newRuncContainer(id string, mib int, nodes ...*node.Node) (*runcContainer, error) {
	bin := filepath.Join(os.TempDir(), "lpm-bench-randmem-"+r.Lab.Name)
	if _, err := os.Stat(bin); err != nil {
		if err := r.Lab.BuildRandmem(context.Background(), bin); err != nil {
			return nil, err
		}
	}
	c := &runcContainer{id: id, bundle: filepath.Join(bundleBase, id), nodes: nodes}
	for _, n := range nodes {
		root := n.HostPath(filepath.Join(c.bundle, "rootfs"))
		for _, d := range []string{"proc", "dev", "sys", "tmp"} {
			if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
				return nil, err
			}
		}
		if err := copyExecutable(bin, filepath.Join(root, "randmem")); err != nil {
			return nil, err
		}
		cfg, err := json.MarshalIndent(runcConfig(mib, "/"+n.CgroupRoot()+"/lpm-bench-"+id), "", "  ")
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(n.HostPath(filepath.Join(c.bundle, "config.json")), cfg, 0o644); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func copyExecutable(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o755)
}

// runcConfig returns an OCI runtime configuration close to what containerd
// writes for a pod's container: new PID, mount, IPC, UTS and network
// namespaces, proc, a tmpfs /dev and a read-only sysfs.
func runcConfig(mib int, cgroupsPath string) map[string]any {
	return map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{
			"terminal": false,
			"user":     map[string]any{"uid": 0, "gid": 0},
			"args":     []string{"/randmem", fmt.Sprintf("-mib=%d", mib), "-ready-file=/tmp/ready"},
			"env":      []string{"PATH=/"},
			"cwd":      "/",
			"capabilities": map[string]any{
				"bounding":  []string{"CAP_KILL", "CAP_NET_BIND_SERVICE"},
				"effective": []string{"CAP_KILL", "CAP_NET_BIND_SERVICE"},
				"permitted": []string{"CAP_KILL", "CAP_NET_BIND_SERVICE"},
			},
			"noNewPrivileges": true,
		},
		"root":     map[string]any{"path": "rootfs", "readonly": false},
		"hostname": "randmem",
		"mounts": []map[string]any{
			{"destination": "/proc", "type": "proc", "source": "proc"},
			{"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
				"options": []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{"destination": "/sys", "type": "sysfs", "source": "sysfs",
				"options": []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		"linux": map[string]any{
			"cgroupsPath": cgroupsPath,
			"namespaces": []map[string]any{
				{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}, {"type": "network"},
			},
			"maskedPaths":   []string{"/proc/kcore", "/sys/firmware"},
			"readonlyPaths": []string{"/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

// start runs the container on n with `runc run -d` and waits until the
// process has filled its memory.
func (c *runcContainer) start(ctx context.Context, n *node.Node, timeout time.Duration) error {
	if err := c.withPipes(func(stdin, stdout *os.File) error {
		return runIn(ctx, n, stdin, stdout, "run", "-d", "--bundle", c.bundle, c.id)
	}); err != nil {
		return err
	}
	ready := n.HostPath(filepath.Join(c.bundle, "rootfs", "tmp", "ready"))
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(ready); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("runc container %s did not fill its memory within %s", c.id, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// withPipes gives the container new pipes for its standard streams. The
// old ones close: the process they belonged to was checkpointed and ended.
func (c *runcContainer) withPipes(f func(stdin, stdout *os.File) error) error {
	inR, inW, err := os.Pipe()
	if err != nil {
		return err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	c.closePipes()
	c.stdin, c.stdout = inW, outR
	go func() { _, _ = io.Copy(io.Discard, outR) }()
	err = f(inR, outW)
	_ = inR.Close()
	_ = outW.Close()
	return err
}

func (c *runcContainer) closePipes() {
	if c.stdin != nil {
		_ = c.stdin.Close()
	}
	if c.stdout != nil {
		_ = c.stdout.Close()
	}
}

// running reports whether runc sees the container running on n.
func (c *runcContainer) running(ctx context.Context, n *node.Node) error {
	out, err := n.Output(ctx, "runc", "state", c.id)
	if err != nil {
		return err
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return fmt.Errorf("invalid runc state of %s: %w", c.id, err)
	}
	if st.Status != "running" {
		return fmt.Errorf("runc container %s is %s on %s, want running", c.id, st.Status, n.Name())
	}
	return nil
}

// remove kills and deletes the container on every node and removes its
// bundles and images.
func (c *runcContainer) remove(ctx context.Context) {
	for _, n := range c.nodes {
		_, _ = n.Output(ctx, "runc", "delete", "--force", c.id)
		_ = os.RemoveAll(n.HostPath(c.bundle))
		_ = os.RemoveAll(n.HostPath(filepath.Join(imageBase, c.id)))
	}
	c.closePipes()
}

// runIn runs runc inside the node with the given standard streams, which
// the container inherits. Its standard error is the container's too, so
// it must be a pipe as well: runc's own messages go to a log file instead,
// which an error includes.
func runIn(ctx context.Context, n *node.Node, stdin, stdout *os.File, args ...string) error {
	logFile := filepath.Join(imageBase, fmt.Sprintf("runc-%d.log", time.Now().UnixNano()))
	defer func() { _ = os.Remove(n.HostPath(logFile)) }()
	if err := os.MkdirAll(n.HostPath(imageBase), 0o700); err != nil {
		return err
	}
	cmd := n.Command(ctx, "runc", append([]string{"--log", logFile}, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stdout
	if err := cmd.Run(); err != nil {
		log, _ := os.ReadFile(n.HostPath(logFile))
		return fmt.Errorf("runc %s on %s failed: %w: %s", strings.Join(args, " "), n.Name(), err,
			lastLines(string(log), 5))
	}
	return nil
}

func lastLines(s string, count int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > count {
		lines = lines[len(lines)-count:]
	}
	return strings.Join(lines, "\n")
}

// CRIUFloor checkpoints and restores the same randmem process on node-a
// with runc and the node's CRIU, images in the node's tmpfs.
func (r *Runner) CRIUFloor(ctx context.Context, mib, index int) results.Run {
	run := r.newRun(mib, index)
	if err := r.criuFloor(ctx, &run); err != nil {
		run.Error = err.Error()
	}
	return run
}

func (r *Runner) criuFloor(ctx context.Context, run *results.Run) error {
	n := r.Lab.Source
	c, err := r.newRuncContainer(fmt.Sprintf("criu-%d-%d", run.SizeMiB, run.Index), run.SizeMiB, n)
	if err != nil {
		return err
	}
	defer c.remove(context.WithoutCancel(ctx))
	if err := c.start(ctx, n, 5*time.Minute); err != nil {
		return err
	}
	images := filepath.Join(imageBase, c.id)
	if err := os.MkdirAll(n.HostPath(images), 0o700); err != nil {
		return err
	}
	overhead, err := commandOverhead(ctx, n)
	if err != nil {
		return err
	}

	start := time.Now()
	if _, err := n.Output(ctx, "runc", "checkpoint", "--image-path", images, c.id); err != nil {
		return err
	}
	dumped := time.Now()
	if err := c.withPipes(func(stdin, stdout *os.File) error {
		return runIn(ctx, n, stdin, stdout, "restore", "-d", "--image-path", images, "--bundle", c.bundle,
			c.id)
	}); err != nil {
		return err
	}
	restored := time.Now()
	if err := c.running(ctx, n); err != nil {
		return err
	}
	run.Stages[StageRuncCheckpoint] = dumped.Sub(start).Seconds()
	run.Stages[StageRuncRestore] = restored.Sub(dumped).Seconds()
	run.Stages[StageCRIUFloor] = restored.Sub(start).Seconds()
	run.Values["commandOverheadSeconds"] = overhead.Seconds()
	run.Values["imageBytes"] = float64(dirSize(n.HostPath(images)))
	r.logf("CRIU floor %d MiB run %d: %.3fs (checkpoint %.3fs, restore %.3fs)", run.SizeMiB, run.Index,
		run.Stages[StageCRIUFloor], run.Stages[StageRuncCheckpoint], run.Stages[StageRuncRestore])
	return nil
}

// PageServer moves the same randmem process from node-a to node-b with
// runc and CRIU: CRIU's page server on node-b receives the memory pages
// while node-a dumps, the few other image files are copied after the dump,
// and runc restores on node-b. It is a prototype of a path below the
// runtime floor: no archive, no image, no copy of the pages on either disk.
func (r *Runner) PageServer(ctx context.Context, mib, index int) results.Run {
	run := r.newRun(mib, index)
	if err := r.pageServer(ctx, &run); err != nil {
		run.Error = err.Error()
	}
	return run
}

func (r *Runner) pageServer(ctx context.Context, run *results.Run) error {
	src, dst := r.Lab.Source, r.Lab.Target
	c, err := r.newRuncContainer(fmt.Sprintf("ps-%d-%d", run.SizeMiB, run.Index), run.SizeMiB, src, dst)
	if err != nil {
		return err
	}
	defer c.remove(context.WithoutCancel(ctx))
	if err := c.start(ctx, src, 5*time.Minute); err != nil {
		return err
	}
	images := filepath.Join(imageBase, c.id)
	for _, n := range []*node.Node{src, dst} {
		if err := os.MkdirAll(n.HostPath(images), 0o700); err != nil {
			return err
		}
	}

	// The page server serves one dump and exits.
	server := dst.Command(ctx, "criu", "page-server", "--images-dir", images, "--address", dst.IP().String(),
		"--port", fmt.Sprint(pageServerPort))
	var serverErr strings.Builder
	server.Stderr = &serverErr
	if err := server.Start(); err != nil {
		return fmt.Errorf("failed to start CRIU's page server on %s: %w", dst.Name(), err)
	}
	serverDone := make(chan error, 1)
	go func() { serverDone <- server.Wait() }()
	if err := waitListening(ctx, dst, pageServerPort, 10*time.Second); err != nil {
		_ = server.Process.Kill()
		return err
	}

	start := time.Now()
	_, dumpErr := src.Output(ctx, "runc", "checkpoint", "--page-server",
		fmt.Sprintf("%s:%d", dst.IP(), pageServerPort), "--image-path", images, c.id)
	dumped := time.Now()
	var serverResult error
	select {
	case serverResult = <-serverDone:
	case <-time.After(30 * time.Second):
		_ = server.Process.Kill()
		serverResult = errors.New("page server did not exit 30s after the dump")
	}
	if dumpErr != nil {
		return dumpErr
	}
	if serverResult != nil {
		return fmt.Errorf("CRIU's page server on %s failed: %w: %s", dst.Name(), serverResult,
			strings.TrimSpace(serverErr.String()))
	}
	copied, err := copyDir(src.HostPath(images), dst.HostPath(images))
	if err != nil {
		return err
	}
	copyDone := time.Now()
	if err := c.withPipes(func(stdin, stdout *os.File) error {
		return runIn(ctx, dst, stdin, stdout, "restore", "-d", "--image-path", images, "--bundle",
			c.bundle, c.id)
	}); err != nil {
		return err
	}
	restored := time.Now()
	if err := c.running(ctx, dst); err != nil {
		return err
	}
	run.Stages[StageRuncCheckpoint] = dumped.Sub(start).Seconds()
	run.Stages[StageCopyImages] = copyDone.Sub(dumped).Seconds()
	run.Stages[StageRuncRestore] = restored.Sub(copyDone).Seconds()
	run.Stages[StagePageServer] = restored.Sub(start).Seconds()
	run.Values["copiedBytes"] = float64(copied)
	run.Values["pagesBytes"] = float64(dirSize(dst.HostPath(images)) - copied)
	r.logf("page server %d MiB run %d: %.3fs (dump with pages streamed %.3fs, copy %.3fs, restore %.3fs)",
		run.SizeMiB, run.Index, run.Stages[StagePageServer], run.Stages[StageRuncCheckpoint],
		run.Stages[StageCopyImages], run.Stages[StageRuncRestore])
	return nil
}

// waitListening waits until a TCP port listens inside the node. It looks
// with ss instead of connecting, because the page server serves only the
// first connection.
func waitListening(ctx context.Context, n *node.Node, port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		out, err := n.Output(ctx, "ss", "-ltnH", fmt.Sprintf("sport = :%d", port))
		if err == nil && strings.TrimSpace(string(out)) != "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on port %d of %s after %s", port, n.Name(), timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// copyDir copies the regular files of src into dst, and returns the
// bytes copied.
func copyDir(src, dst string) (int64, error) {
	entries, err := os.ReadDir(src)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return total, err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o600); err != nil {
			return total, err
		}
		total += int64(len(data))
	}
	return total, nil
}

func dirSize(dir string) int64 {
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				total += info.Size()
			}
		}
		return nil
	})
	return total
}

// commandOverhead returns how long running `true` inside the node takes:
// the cost of nsenter that every runc time above includes.
func commandOverhead(ctx context.Context, n *node.Node) (time.Duration, error) {
	start := time.Now()
	if err := n.Command(ctx, "true").Run(); err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			return 0, err
		}
	}
	return time.Since(start), nil
}
