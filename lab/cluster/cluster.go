// Package cluster brings up and tears down a lab, a real Kubernetes cluster
// on this machine. The control plane runs on the host, with etcd on
// loopback and the kube-apiserver on the lab bridge. The worker nodes come
// from package node, each with containerd, a kubelet and kube-proxy.
//
// Authentication is by client certificate from the lab's CA, authorization
// is Node and RBAC with NodeRestriction, kubelets authenticate and
// authorize their API callers through the kube-apiserver (webhook), and
// serve certificates signed by the lab's CA.
//
// Down stops every process of the lab by PID and removes its interfaces,
// host routes and cgroups; Up runs Down first, so a lab that crashed is
// cleaned before a new one starts. Remains lists what of a lab is still on
// the machine.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/lpm-dev/lpm/lab/instance"
	"github.com/lpm-dev/lpm/lab/network"
	"github.com/lpm-dev/lpm/lab/node"
	"github.com/lpm-dev/lpm/lab/proc"
)

// DefaultNodes is the number of worker nodes of a lab.
const DefaultNodes = 2

// Options configure a lab.
type Options struct {
	// Nodes is the number of worker nodes; 0 means DefaultNodes.
	Nodes int
	// DisableRestore turns off restore from checkpoint images in the
	// containerd of the nodes with these indexes.
	DisableRestore map[int]bool
	// Log receives progress lines; nil discards them.
	Log func(format string, args ...any)
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
}

// Lab is one lab cluster.
type Lab struct {
	inst  instance.Instance
	opts  Options
	clock func() time.Time
}

// New returns the lab of an instance. It starts nothing.
func New(inst instance.Instance, opts Options) *Lab {
	if opts.Nodes == 0 {
		opts.Nodes = DefaultNodes
	}
	if opts.DisableRestore == nil {
		opts.DisableRestore = map[int]bool{}
	}
	if opts.Log == nil {
		opts.Log = func(string, ...any) {}
	}
	clock := opts.Clock
	if clock == nil {
		clock = time.Now
	}
	return &Lab{inst: inst, opts: opts, clock: clock}
}

// Instance returns the lab's instance.
func (l *Lab) Instance() instance.Instance { return l.inst }

// Kubeconfig is the path of the lab's cluster-admin kubeconfig.
func (l *Lab) Kubeconfig() string { return l.inst.AdminKubeconfig() }

// Up removes what remains of an earlier lab of the same instance, then
// starts the control plane and the nodes and waits until every node is
// Ready. The image archives in the instance's image directory are imported
// into each node before its kubelet starts.
func (l *Lab) Up(ctx context.Context) error {
	start := l.clock()
	if err := l.Down(); err != nil {
		return fmt.Errorf("failed to clean up the previous lab: %w", err)
	}
	for _, d := range []string{l.inst.PKIDir(), l.inst.ControlPlaneDir(), filepath.Join(l.inst.StateDir, "nodes")} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("failed to remove old lab state: %w", err)
		}
	}
	if err := os.MkdirAll(l.inst.ImagesDir(), 0o755); err != nil {
		return err
	}
	if err := network.EnsureBridge(l.inst); err != nil {
		return err
	}
	if err := l.writePKI(); err != nil {
		return err
	}
	l.opts.Log("starting the control plane on %s", l.inst.APIServerURL())
	if err := l.startControlPlane(ctx); err != nil {
		return err
	}
	client, err := l.Client()
	if err != nil {
		return err
	}
	if err := l.bootstrap(ctx, client); err != nil {
		return err
	}
	for i := 0; i < l.opts.Nodes; i++ {
		l.opts.Log("starting node %s (%s, pod CIDR %s)", l.inst.NodeName(i), l.inst.NodeIP(i), l.inst.PodCIDR(i))
		if _, err := l.startNode(ctx, i); err != nil {
			return err
		}
	}
	if err := l.waitNodesReady(ctx, client, 2*time.Minute); err != nil {
		return err
	}
	l.opts.Log("lab %q is up in %s; kubeconfig: %s", l.inst.Name, l.clock().Sub(start).Round(100*time.Millisecond),
		l.Kubeconfig())
	return nil
}

// RESTConfig returns the admin's client configuration.
func (l *Lab) RESTConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", l.Kubeconfig())
	if err != nil {
		return nil, fmt.Errorf("failed to load kubeconfig %s: %w", l.Kubeconfig(), err)
	}
	return cfg, nil
}

// Client returns a clientset with the admin's credentials.
func (l *Lab) Client() (kubernetes.Interface, error) {
	cfg, err := l.RESTConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// bootstrap grants the kube-apiserver's kubelet client the kubelet API
// (logs, exec, port-forward), which the kubelets authorize through RBAC.
func (l *Lab) bootstrap(ctx context.Context, client kubernetes.Interface) error {
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "lpm-lab:kube-apiserver-kubelet-client"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:kubelet-api-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: apiServerKubeletUser}},
	}
	// The RBAC bootstrap roles appear a moment after /readyz.
	deadline := l.clock().Add(30 * time.Second)
	for {
		_, err := client.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{})
		if err == nil || apierrors.IsAlreadyExists(err) {
			return nil
		}
		if l.clock().After(deadline) {
			return fmt.Errorf("failed to create ClusterRoleBinding %s: %w", crb.Name, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (l *Lab) waitNodesReady(ctx context.Context, client kubernetes.Interface, timeout time.Duration) error {
	deadline := l.clock().Add(timeout)
	for {
		nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		ready := 0
		if err == nil {
			for _, n := range nodes.Items {
				for _, c := range n.Status.Conditions {
					if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
						ready++
					}
				}
			}
		}
		// Pods cannot be created before the controller manager has made the
		// namespace's default service account.
		_, saErr := client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		if ready == l.opts.Nodes && saErr == nil {
			return nil
		}
		if err == nil {
			err = saErr
		}
		if l.clock().After(deadline) {
			return fmt.Errorf("%d of %d nodes Ready after %s; see the kubelet logs under %s: %w",
				ready, l.opts.Nodes, timeout, filepath.Join(l.inst.StateDir, "nodes"), err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Nodes returns the lab's running nodes.
func (l *Lab) Nodes() ([]*node.Node, error) {
	var out []*node.Node
	for i := 0; i < instance.MaxNodes; i++ {
		if _, err := os.Stat(l.inst.NodeDir(i)); err != nil {
			continue
		}
		n, err := node.Open(node.Config{Instance: l.inst, Index: i})
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("lab %q has no running node; run lpm-lab up", l.inst.Name)
	}
	return out, nil
}

// Node returns the running node with a Kubernetes node name.
func (l *Lab) Node(name string) (*node.Node, error) {
	for i := 0; i < instance.MaxNodes; i++ {
		if l.inst.NodeName(i) == name {
			return node.Open(node.Config{Instance: l.inst, Index: i})
		}
	}
	return nil, fmt.Errorf("no node %q in lab %q", name, l.inst.Name)
}

// Down stops every node and the control plane, and removes the lab's
// interfaces, host routes and cgroups. The state directory (logs
// included) stays until the next Up. Down on a lab that is not running
// removes whatever remains of it.
func (l *Lab) Down() error {
	var errs []error
	for i := 0; i < instance.MaxNodes; i++ {
		n := &nodeRef{inst: l.inst, index: i}
		errs = append(errs, n.stop())
	}
	for _, name := range controlPlane {
		errs = append(errs, proc.StopFile(l.pidFile(name), 10*time.Second))
	}
	errs = append(errs, killStrays(l.inst.StateDir))
	errs = append(errs, network.RemoveBridge(l.inst))
	return errors.Join(errs...)
}

type nodeRef struct {
	inst  instance.Instance
	index int
}

func (r *nodeRef) stop() error {
	n, err := node.Open(node.Config{Instance: r.inst, Index: r.index, RootFS: "-"})
	if err != nil {
		// Not running: Stop on a fresh handle removes what remains.
		n = node.Handle(node.Config{Instance: r.inst, Index: r.index, RootFS: "-"})
	}
	return n.Stop()
}

// killStrays kills processes that run a component binary from the cache
// with a command line that names the lab's state directory: processes of
// the lab whose PID file was lost in a crash.
func killStrays(stateDir string) error {
	cacheDir := node.DefaultCacheDir() + "/"
	pids, err := proc.All()
	if err != nil {
		return err
	}
	self := os.Getpid()
	var errs []error
	for _, pid := range pids {
		if pid == self {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.Contains(string(data), stateDir+"/") {
			continue
		}
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err != nil || !strings.HasPrefix(exe, cacheDir) {
			continue
		}
		if p, err := proc.Lookup(pid); err == nil {
			errs = append(errs, p.Kill())
		}
	}
	return errors.Join(errs...)
}
