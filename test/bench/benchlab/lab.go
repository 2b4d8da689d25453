// Package benchlab gives the benchmarks what they need of a running lab
// (package lab): API clients, the two nodes with their containerd, the
// randmem workload's image and pods, and direct calls to a kubelet's
// checkpoint API. It changes nothing in the lab except the objects in its
// own namespace and the images it imports.
package benchlab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/agent/runtime"
	"github.com/lpm-dev/lpm/internal/imagebuild"
	"github.com/lpm-dev/lpm/lab"
	"github.com/lpm-dev/lpm/lab/cluster"
	"github.com/lpm-dev/lpm/lab/node"
	"github.com/lpm-dev/lpm/lab/workload"
)

// Namespace holds every object the benchmarks create in the lab.
const Namespace = "lpm-bench"

// RandmemRef is the image of the randmem workload (test/bench/apps/randmem).
const RandmemRef = "localhost/lpm-bench/randmem:v1"

// RandmemPort is the port randmem serves its health and checksum on.
const RandmemPort = 8080

// Lab is a running lab with both nodes opened.
type Lab struct {
	Name    string
	RepoDir string
	Lab     *cluster.Lab
	Config  *rest.Config
	Clients *workload.Clients
	// Source and Target are node-a and node-b.
	Source *node.Node
	Target *node.Node
}

// Open attaches to the running lab name. repoDir is the repository root.
func Open(name, repoDir string) (*Lab, error) {
	opts := lab.DefaultOptions()
	opts.Name, opts.RepoDir = name, repoDir
	l, err := lab.Open(opts)
	if err != nil {
		return nil, err
	}
	cfg, err := l.RESTConfig()
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 200, 400
	clients, err := workload.NewClients(cfg)
	if err != nil {
		return nil, err
	}
	nodes, err := l.Nodes()
	if err != nil {
		return nil, err
	}
	if len(nodes) < 2 {
		return nil, fmt.Errorf("lab %q runs %d nodes; the benchmarks need two", name, len(nodes))
	}
	return &Lab{Name: name, RepoDir: repoDir, Lab: l, Config: cfg, Clients: clients, Source: nodes[0],
		Target: nodes[1]}, nil
}

// Node returns the node named name.
func (l *Lab) Node(name string) (*node.Node, error) {
	for _, n := range []*node.Node{l.Source, l.Target} {
		if n.Name() == name {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no node %q in lab %q", name, l.Name)
}

// Runtime connects to a node's containerd from the host.
func (l *Lab) Runtime(ctx context.Context, n *node.Node) (*runtime.Runtime, error) {
	return runtime.Connect(ctx, n.ContainerdSocket())
}

// PrepareImages builds the randmem image and imports it into both nodes.
// The archive goes into the lab's image directory, which every node sees
// at the same path.
func (l *Lab) PrepareImages(ctx context.Context) error {
	binDir, err := os.MkdirTemp("", "lpm-bench-randmem-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(binDir) }()
	bin := filepath.Join(binDir, "randmem")
	if err := l.BuildRandmem(ctx, bin); err != nil {
		return err
	}
	img, err := imagebuild.Build(imagebuild.Spec{
		Ref:        RandmemRef,
		Files:      []imagebuild.File{{Path: "/randmem", Source: bin}},
		Dirs:       []string{"/tmp"},
		Entrypoint: []string{"/randmem"},
		Env:        []string{"PATH=/"},
	})
	if err != nil {
		return err
	}
	archive := filepath.Join(l.Lab.Instance().ImagesDir(), "lpm-bench-randmem.tar")
	if err := imagebuild.WriteArchive(archive, img); err != nil {
		return err
	}
	for _, n := range []*node.Node{l.Source, l.Target} {
		if err := n.ImportImage(ctx, archive); err != nil {
			return err
		}
	}
	return nil
}

// BuildRandmem builds the randmem binary to out, a static Linux binary
// that runs in a pod and in a bare runc bundle alike.
func (l *Lab) BuildRandmem(ctx context.Context, out string) error {
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out,
		"./test/bench/apps/randmem")
	build.Dir = l.RepoDir
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if data, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("failed to build randmem: %w: %s", err, strings.TrimSpace(string(data)))
	}
	return nil
}

// RandmemPod returns a pod on nodeName that holds mib MiB of random
// memory. Its readiness probe asks /healthz once a second, so Ready means
// that the process answers.
func RandmemPod(name, nodeName string, mib int) *corev1.Pod {
	grace := int64(1)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: name,
			Labels: map[string]string{"app.kubernetes.io/name": "randmem", "lpm.dev/bench": name}},
		Spec: corev1.PodSpec{
			NodeName:                      nodeName,
			TerminationGracePeriodSeconds: &grace,
			AutomountServiceAccountToken:  new(bool),
			Containers: []corev1.Container{{
				Name:            "randmem",
				Image:           RandmemRef,
				ImagePullPolicy: corev1.PullNever,
				Args:            []string{fmt.Sprintf("-mib=%d", mib), fmt.Sprintf("-listen=:%d", RandmemPort)},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz",
						Port: intstr.FromInt32(RandmemPort)}},
					PeriodSeconds:    1,
					FailureThreshold: 1,
				},
			}},
		},
	}
}

// EnsureNamespace creates the benchmarks' namespace.
func (l *Lab) EnsureNamespace(ctx context.Context) error {
	return l.Clients.EnsureNamespace(ctx, Namespace)
}

// CleanNamespace deletes every pod and PodMigration in the namespace and
// waits until they are gone.
func (l *Lab) CleanNamespace(ctx context.Context, timeout time.Duration) error {
	c := l.Clients.Client
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.InNamespace(Namespace)); err != nil {
		return err
	}
	for i := range pods.Items {
		if err := c.Delete(ctx, &pods.Items[i], client.GracePeriodSeconds(1)); err != nil &&
			!apierrors.IsNotFound(err) {
			return err
		}
	}
	if err := deleteMigrations(ctx, c); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		if err := c.List(ctx, &pods, client.InNamespace(Namespace)); err != nil {
			return err
		}
		left, err := countMigrations(ctx, c)
		if err != nil {
			return err
		}
		if len(pods.Items) == 0 && left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("namespace %s still holds %d pods and %d PodMigrations after %s", Namespace,
				len(pods.Items), left, timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// PodIP returns the pod's address, reachable from the host through the
// lab's routes to each node's pod network.
func (l *Lab) PodIP(ctx context.Context, name string) (string, error) {
	pod := &corev1.Pod{}
	if err := l.Clients.Client.Get(ctx, client.ObjectKey{Namespace: Namespace, Name: name}, pod); err != nil {
		return "", err
	}
	if pod.Status.PodIP == "" {
		return "", fmt.Errorf("pod %s has no IP yet", name)
	}
	return pod.Status.PodIP, nil
}

// Checksum asks a randmem pod for the SHA-256 of its memory.
func (l *Lab) Checksum(ctx context.Context, podName string) (string, error) {
	ip, err := l.PodIP(ctx, podName)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	u := fmt.Sprintf("http://%s:%d/checksum", ip, RandmemPort)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	// No connection may stay open: CRIU cannot dump a process with an
	// established TCP connection unless told to.
	httpClient := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := httpClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("failed to get the checksum of pod %s: %w", podName, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("checksum of pod %s: %s: %s", podName, resp.Status, strings.TrimSpace(string(body)))
	}
	return strings.TrimSpace(string(body)), nil
}

// KubeletCheckpoint calls the checkpoint API of the kubelet on n directly,
// with the lab administrator's client certificate, and returns the
// archive's path inside the node.
func (l *Lab) KubeletCheckpoint(ctx context.Context, n *node.Node, pod, container string,
	timeout time.Duration) (string, error) {
	httpClient, err := rest.HTTPClientFor(l.Config)
	if err != nil {
		return "", err
	}
	u := url.URL{Scheme: "https", Host: fmt.Sprintf("%s:10250", n.IP()),
		Path:     fmt.Sprintf("/checkpoint/%s/%s/%s", Namespace, pod, container),
		RawQuery: fmt.Sprintf("timeout=%d", int(timeout.Seconds()))}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
	if err != nil {
		return "", err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("failed to call the checkpoint API of %s: %w", n.Name(), err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("checkpoint of %s/%s on %s: %s: %s", pod, container, n.Name(), resp.Status,
			strings.TrimSpace(string(body)))
	}
	var out struct {
		Items []string `json:"items"`
	}
	if err := json.Unmarshal(body, &out); err != nil || len(out.Items) != 1 {
		return "", fmt.Errorf("invalid checkpoint response from %s: %s", n.Name(), body)
	}
	return out.Items[0], nil
}

// HostPath returns the host path of a path inside the node n.
func HostPath(n *node.Node, p string) string {
	return n.HostPath(p)
}

func deleteMigrations(ctx context.Context, c client.Client) error {
	var list lpmv1.PodMigrationList
	if err := c.List(ctx, &list, client.InNamespace(Namespace)); err != nil {
		return err
	}
	for i := range list.Items {
		if err := c.Delete(ctx, &list.Items[i]); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

func countMigrations(ctx context.Context, c client.Client) (int, error) {
	var list lpmv1.PodMigrationList
	if err := c.List(ctx, &list, client.InNamespace(Namespace)); err != nil {
		return 0, err
	}
	return len(list.Items), nil
}
