// Package lab implements the lpm-lab command: it builds the lab's images,
// brings a lab cluster up and down (package cluster), installs lpm into it
// and runs the demo migration.
package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/lpm-dev/lpm/lab/cluster"
	"github.com/lpm-dev/lpm/lab/images"
	"github.com/lpm-dev/lpm/lab/instance"
	"github.com/lpm-dev/lpm/lab/node"
)

// Options are the lpm-lab command's global flags.
type Options struct {
	Name      string
	StateBase string
	Nodes     int
	RepoDir   string
}

// DefaultOptions returns the defaults: the lab "lpm" with two nodes, state
// under instance.DefaultStateBase and the working directory as the
// repository.
func DefaultOptions() Options {
	wd, _ := os.Getwd()
	return Options{Name: "lpm", StateBase: instance.DefaultStateBase(), Nodes: cluster.DefaultNodes, RepoDir: wd}
}

func logf(format string, args ...any) {
	fmt.Printf("%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// Open returns the lab of opts.
func Open(opts Options) (*cluster.Lab, error) {
	inst, err := instance.New(opts.Name, opts.StateBase)
	if err != nil {
		return nil, err
	}
	return cluster.New(inst, cluster.Options{Nodes: opts.Nodes, Log: logf}), nil
}

// Run runs one lpm-lab subcommand and returns the exit code.
func Run(ctx context.Context, opts Options, command string, args []string) (int, error) {
	if command != "kubeconfig" && os.Geteuid() != 0 {
		return 1, fmt.Errorf("lpm-lab %s needs root: it creates namespaces, mounts, interfaces and cgroups", command)
	}
	l, err := Open(opts)
	if err != nil {
		return 1, err
	}
	switch command {
	case "up":
		if err := CheckHost(); err != nil {
			return 1, err
		}
		if err := BuildImages(ctx, opts, l); err != nil {
			return 1, err
		}
		return 0, l.Up(ctx)
	case "down":
		if err := l.Down(); err != nil {
			return 1, err
		}
		remains, err := l.Remains()
		if err != nil {
			return 1, err
		}
		if len(remains) > 0 {
			return 1, fmt.Errorf("lab %q left remains:\n  %s", opts.Name, strings.Join(remains, "\n  "))
		}
		logf("lab %q is down; logs stay under %s until the next up", opts.Name, l.Instance().StateDir)
		return 0, nil
	case "remains":
		remains, err := l.Remains()
		if err != nil {
			return 1, err
		}
		for _, r := range remains {
			fmt.Println(r)
		}
		if len(remains) > 0 {
			return 1, nil
		}
		return 0, nil
	case "status":
		return status(ctx, l)
	case "images":
		if err := BuildImages(ctx, opts, l); err != nil {
			return 1, err
		}
		return 0, l.ImportImages(ctx)
	case "install":
		dir := ""
		if len(args) > 0 {
			dir = args[0]
		}
		return 0, Install(ctx, opts, l, dir)
	case "demo":
		return Demo(ctx, opts, l)
	case "kubeconfig":
		fmt.Println(l.Kubeconfig())
		return 0, nil
	case "kubectl":
		cmd := Kubectl(ctx, l, args...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				return exit.ExitCode(), nil
			}
			return 1, err
		}
		return 0, nil
	default:
		return 2, fmt.Errorf("unknown command %q", command)
	}
}

// Kubectl returns a kubectl command with the lab's admin kubeconfig.
func Kubectl(ctx context.Context, l *cluster.Lab, args ...string) *exec.Cmd {
	bin := "kubectl"
	if dir, err := node.ComponentPath("kubectl"); err == nil {
		bin = filepath.Join(dir, "kubectl")
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+l.Kubeconfig())
	return cmd
}

// BuildImages builds the lab's images into the instance's image directory.
func BuildImages(ctx context.Context, opts Options, l *cluster.Lab) error {
	start := time.Now()
	results, err := images.Build(ctx, opts.RepoDir, l.Instance().ImagesDir(), images.All)
	if err != nil {
		return err
	}
	var names []string
	for _, r := range results {
		names = append(names, r.Image.Ref)
	}
	logf("built %d images in %s: %s", len(results), time.Since(start).Round(100*time.Millisecond),
		strings.Join(names, ", "))
	return nil
}

func status(ctx context.Context, l *cluster.Lab) (int, error) {
	nodes, err := l.Nodes()
	if err != nil {
		return 1, err
	}
	for _, n := range nodes {
		var daemons []string
		for _, d := range []string{"containerd", "kubelet", "kube-proxy"} {
			if p, ok := n.Daemon(d); ok {
				daemons = append(daemons, fmt.Sprintf("%s=%d", d, p.PID))
			} else {
				daemons = append(daemons, d+"=stopped")
			}
		}
		fmt.Printf("node %s %s anchor=%d %s\n", n.Name(), n.IP(), n.PID(), strings.Join(daemons, " "))
	}
	cmd := Kubectl(ctx, l, "get", "nodes,pods", "-A", "-o", "wide")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return 0, cmd.Run()
}

// CheckHost stops with a clear message when the machine cannot run a lab.
func CheckHost() error {
	var problems []string
	if os.Geteuid() != 0 {
		problems = append(problems, "run as root")
	}
	for _, f := range []string{"/proc/self/ns/pid_for_children", "/proc/sys/kernel/ns_last_pid"} {
		if _, err := os.Stat(f); err != nil {
			problems = append(problems, fmt.Sprintf("the kernel lacks %s (CONFIG_CHECKPOINT_RESTORE, PID namespaces)", f))
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup"); err != nil {
		problems = append(problems, "no cgroup file system at /sys/fs/cgroup")
	}
	for _, tool := range []string{"ip", "nsenter", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			problems = append(problems, fmt.Sprintf("%s is not installed", tool))
		}
	}
	if free, err := freeBytes(instance.DefaultStateBase()); err == nil && free < 4<<30 {
		problems = append(problems, fmt.Sprintf("only %d MiB free for the lab's state; want 4 GiB", free>>20))
	}
	if len(problems) > 0 {
		return fmt.Errorf("this machine cannot run the lab:\n  %s", strings.Join(problems, "\n  "))
	}
	return nil
}
