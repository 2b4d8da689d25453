package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/lpm-dev/lpm/lab/node"
)

func kubeletConfig(l *Lab, n *node.Node) string {
	cfg := n.ConfigDir()
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# The host runs cgroup v1 (hybrid); the kubelet must be told to accept it.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /%s
containerRuntimeEndpoint: unix://%s
address: %s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: %s/kubelet-serving.crt
tlsPrivateKeyFile: %s/kubelet-serving.key
rotateCertificates: false
serverTLSBootstrap: false
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
    cacheTTL: 10s
  x509:
    clientCAFile: %s/ca.crt
authorization:
  mode: Webhook
  webhook:
    cacheAuthorizedTTL: 10s
    cacheUnauthorizedTTL: 5s
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
failSwapOn: false
# Both nodes share one disk; keep the kubelet from evicting pods or
# collecting the imported images unless the disk is nearly full.
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%%
  imagefs.available: 1%%
  nodefs.inodesFree: 1%%
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
podLogsDirectory: /var/log/pods
registerNode: true
serializeImagePulls: false
shutdownGracePeriod: 0s
`, n.CgroupRoot(), node.ContainerdSocketPath, n.IP(), cfg, cfg, cfg)
}

func kubeProxyConfig(l *Lab, n *node.Node) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: %s/kube-proxy.kubeconfig
hostnameOverride: %s
bindAddress: %s
clusterCIDR: %s
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Conntrack limits and timeouts are host-wide or would change the host's
# defaults; leave them alone.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, n.ConfigDir(), n.Name(), n.IP(), l.inst.ClusterCIDR())
}

// startNode starts node i with containerd, the lab's images, a kubelet and
// kube-proxy.
func (l *Lab) startNode(ctx context.Context, i int) (*node.Node, error) {
	// The node's certificates are in place before the node starts. The CA
	// certificate also appears at /etc/kubernetes/pki/ca.crt, where
	// kubeadm puts it on every node, for pods that verify the kubelet.
	configDir := filepath.Join(l.inst.NodeDir(i), "config")
	caDir := filepath.Join(l.inst.NodeDir(i), "kubernetes-pki")
	for _, d := range []string{configDir, caDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := l.writeNodePKI(i, configDir); err != nil {
		return nil, err
	}
	if err := copyFile(filepath.Join(configDir, "ca.crt"), filepath.Join(caDir, "ca.crt")); err != nil {
		return nil, err
	}
	n, err := node.Start(ctx, node.Config{
		Instance: l.inst,
		Index:    i,
		Hosts:    []string{fmt.Sprintf("%s kubernetes", l.inst.BridgeIP())},
		Binds:    []node.Bind{{Source: caDir, Target: "/etc/kubernetes/pki", ReadOnly: true}},
	})
	if err != nil {
		return nil, err
	}
	files := map[string]string{
		"kubelet.yaml":    kubeletConfig(l, n),
		"kube-proxy.yaml": kubeProxyConfig(l, n),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(n.ConfigDir(), name), []byte(content), 0o644); err != nil {
			return n, fmt.Errorf("failed to write %s of node %s: %w", name, n.Name(), err)
		}
	}
	if err := n.StartContainerd(ctx, node.ContainerdConfig{DisableRestore: l.opts.DisableRestore[i]}); err != nil {
		return n, err
	}
	if err := l.importImages(ctx, n); err != nil {
		return n, err
	}
	if err := l.StartKubelet(n); err != nil {
		return n, err
	}
	_, err = n.StartDaemon("kube-proxy", "kube-proxy", "--config="+filepath.Join(n.ConfigDir(), "kube-proxy.yaml"),
		"--v=1")
	return n, err
}

// StartKubelet starts (or restarts) a node's kubelet.
func (l *Lab) StartKubelet(n *node.Node) error {
	_, err := n.StartDaemon("kubelet", "kubelet",
		"--config="+filepath.Join(n.ConfigDir(), "kubelet.yaml"),
		"--kubeconfig="+filepath.Join(n.ConfigDir(), "kubelet.kubeconfig"),
		"--hostname-override="+n.Name(),
		"--node-ip="+n.IP().String(),
		"--v=1",
	)
	return err
}

// importImages imports every image archive of the lab's image directory
// into the node's containerd.
func (l *Lab) importImages(ctx context.Context, n *node.Node) error {
	archives, err := filepath.Glob(filepath.Join(l.inst.ImagesDir(), "*.tar"))
	if err != nil {
		return err
	}
	sort.Strings(archives)
	for _, a := range archives {
		if err := n.ImportImage(ctx, a); err != nil {
			return err
		}
	}
	return nil
}

// ImportImages imports the lab's image archives into every running node.
func (l *Lab) ImportImages(ctx context.Context) error {
	nodes, err := l.Nodes()
	if err != nil {
		return err
	}
	for _, n := range nodes {
		if err := l.importImages(ctx, n); err != nil {
			return err
		}
	}
	return nil
}
