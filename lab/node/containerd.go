package node

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"text/template"
	"time"
)

// ContainerdConfig selects the parts of a node's containerd configuration
// that tests and the lab change.
type ContainerdConfig struct {
	// SandboxImage is the pause image of every pod sandbox. It must be
	// imported into the node before the kubelet creates a pod. Empty
	// means DefaultSandboxImage.
	SandboxImage string
	// DisableRestore turns off restoring containers from checkpoint images
	// (enable_experimental_restore_via_create), as on a node whose runtime
	// cannot restore.
	DisableRestore bool
	// Runtime is the OCI runtime binary inside the node: /usr/sbin/runc
	// (the default) or /usr/bin/crun.
	Runtime string
	// Debug sets containerd's log level to debug.
	Debug bool
}

// DefaultSandboxImage is the pause image the lab builds from
// test/apps/pause.
const DefaultSandboxImage = "localhost/lpm-test/pause:v1"

// ContainerdSocketPath is containerd's socket inside a node.
const ContainerdSocketPath = "/run/containerd/containerd.sock"

// containerdTemplate is a containerd 2.3 configuration (version 3). The
// node's root lacks CAP_SYS_RESOURCE on some hosts, so restrict_oom_score_adj
// keeps containerd from lowering a sandbox's OOM score below its own, which
// such a root may not do.
var containerdTemplate = template.Must(template.New("containerd").Parse(`version = 3
root = '/var/lib/containerd'
state = '/run/containerd'

[grpc]
  address = '{{.Socket}}'

[debug]
  level = '{{.LogLevel}}'

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '{{.SandboxImage}}'

  [plugins.'io.containerd.cri.v1.runtime']
    enable_criu = true
    restrict_oom_score_adj = true
    enable_experimental_restore_via_create = {{.Restore}}
    netns_mounts_under_state_dir = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '{{.Runtime}}'
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['/opt/cni/bin']
      conf_dir = '/etc/cni/net.d'
`))

// cniTemplate is the node's pod network: a bridge inside the node with the
// node's pod CIDR. Traffic to other nodes' pods is routed by the node.
var cniTemplate = template.Must(template.New("cni").Parse(`{
  "cniVersion": "1.0.0",
  "name": "lpm-lab",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "{{.PodCIDR}}"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`))

// WriteContainerdConfig writes the node's containerd and CNI configuration.
func (n *Node) WriteContainerdConfig(cfg ContainerdConfig) error {
	if cfg.SandboxImage == "" {
		cfg.SandboxImage = DefaultSandboxImage
	}
	if cfg.Runtime == "" {
		cfg.Runtime = "/usr/sbin/runc"
	}
	level := "info"
	if cfg.Debug {
		level = "debug"
	}
	var buf bytes.Buffer
	err := containerdTemplate.Execute(&buf, map[string]any{
		"Socket":       ContainerdSocketPath,
		"LogLevel":     level,
		"SandboxImage": cfg.SandboxImage,
		"Restore":      !cfg.DisableRestore,
		"Runtime":      cfg.Runtime,
	})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(n.Dir(), "etc-containerd", "config.toml"), buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("failed to write the containerd configuration of node %s: %w", n.Name(), err)
	}
	buf.Reset()
	if err := cniTemplate.Execute(&buf, map[string]any{"PodCIDR": n.PodCIDR()}); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(n.Dir(), "cni", "net.d", "10-lpm-lab.conflist"), buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("failed to write the CNI configuration of node %s: %w", n.Name(), err)
	}
	return nil
}

// StartContainerd writes the node's containerd configuration, starts
// containerd inside the node and waits until it serves.
func (n *Node) StartContainerd(ctx context.Context, cfg ContainerdConfig) error {
	if err := n.WriteContainerdConfig(cfg); err != nil {
		return err
	}
	if _, err := n.StartDaemon("containerd", "containerd", "--config", "/etc/containerd/config.toml"); err != nil {
		return err
	}
	return n.waitContainerd(ctx, 30*time.Second)
}

// StopContainerd stops the node's containerd. Running containers keep
// running under their shims.
func (n *Node) StopContainerd() error { return n.StopDaemon("containerd", 10*time.Second) }

func (n *Node) waitContainerd(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var lastErr error
	for {
		if _, lastErr = n.Output(ctx, "ctr", "--address", ContainerdSocketPath, "version"); lastErr == nil {
			return nil
		}
		if _, ok := n.Daemon("containerd"); !ok {
			logData, _ := os.ReadFile(filepath.Join(n.LogDir(), "containerd.log"))
			return fmt.Errorf("containerd on node %s exited: %s", n.Name(), lastLines(string(logData), 10))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("containerd on node %s did not serve within %s: %w", n.Name(), timeout, lastErr)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ContainerdSocket is the host path of the node's containerd socket, for
// clients that run on the host.
func (n *Node) ContainerdSocket() string { return n.HostPath(ContainerdSocketPath) }

// ImportImage imports an image archive (docker-archive or OCI layout tar)
// into the node's containerd, in the "k8s.io" namespace the CRI uses, and
// unpacks it. The archive path must be visible inside the node, for
// example under the lab's image directory.
func (n *Node) ImportImage(ctx context.Context, archive string) error {
	_, err := n.Output(ctx, "ctr", "--address", ContainerdSocketPath, "-n", "k8s.io", "images", "import",
		"--no-unpack=false", archive)
	return err
}
