// Package testenv holds what the agent's integration tests share: the
// workload binary and its images, a registry on loopback
// (go-containerregistry's), and CRI calls that run pods and containers the
// way the kubelet does.
package testenv

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Registry is an OCI registry on loopback.
type Registry struct {
	// Host is host:port.
	Host   string
	server *httptest.Server
}

// Credentials of the registry's protected repositories.
const (
	RegistryUser     = "lpm-test"
	RegistryPassword = "lpm-test-password"
	// ProtectedPrefix starts the repositories that need the credentials.
	ProtectedPrefix = "/v2/private/"
)

// StartRegistry starts go-containerregistry's in-memory registry on
// 127.0.0.1 and stops it when the test ends. Repositories under
// private/ need basic authentication with RegistryUser and
// RegistryPassword; the others are open.
func StartRegistry(t testing.TB) *Registry {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, ProtectedPrefix) {
			user, password, ok := r.BasicAuth()
			if !ok || user != RegistryUser || password != RegistryPassword {
				w.Header().Set("WWW-Authenticate", `Basic realm="lpm-test"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(server.Close)
	return &Registry{Host: strings.TrimPrefix(server.URL, "http://"), server: server}
}

// Images are the references of the workload's images.
type Images struct {
	Counter string
	Pause   string
}

// PushWorkloadImages builds the workload binary and pushes a counter and a
// pause image of it to the registry.
func PushWorkloadImages(t testing.TB, reg *Registry) Images {
	t.Helper()
	binary := buildWorkload(t)
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return appLayer(binary)
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatalf("failed to build the workload layer: %v", err)
	}
	images := Images{
		Counter: reg.Host + "/lpm-test/counter:v1",
		Pause:   reg.Host + "/lpm-test/pause:v1",
	}
	for ref, mode := range map[string]string{images.Counter: "counter", images.Pause: "pause"} {
		img, err := mutate.AppendLayers(mutate.MediaType(mutate.ConfigMediaType(empty.Image,
			types.OCIConfigJSON), types.OCIManifestSchema1), layer)
		if err != nil {
			t.Fatal(err)
		}
		img, err = mutate.Config(img, v1.Config{Entrypoint: []string{"/app", mode}})
		if err != nil {
			t.Fatal(err)
		}
		img, err = mutate.ConfigFile(img, withPlatform(t, img))
		if err != nil {
			t.Fatal(err)
		}
		tag, err := name.NewTag(ref, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(tag, img); err != nil {
			t.Fatalf("failed to push %s: %v", ref, err)
		}
	}
	return images
}

func withPlatform(t testing.TB, img v1.Image) *v1.ConfigFile {
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	return cfg
}

func buildWorkload(t testing.TB) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "app")
	cmd := exec.Command("go", "build", "-o", out, "github.com/lpm-dev/lpm/internal/agent/internal/testworkload")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if output, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("failed to build the workload: %v\n%s", err, output)
	}
	return out
}

func appLayer(binary string) (io.ReadCloser, error) {
	data, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "app", Mode: 0o755, Size: int64(len(data)),
		Typeflag: tar.TypeReg}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return io.NopCloser(&buf), nil
}

// Pod is a pod sandbox run through the CRI.
type Pod struct {
	ID     string
	Config *runtimeapi.PodSandboxConfig
	// LogDir is the pod's log directory on the host.
	LogDir string
}

// RunPod runs a pod sandbox, as the kubelet does, under cgroupParent, with
// its logs under hostLogDir (seen as /var/log/lpm in the node).
func RunPod(ctx context.Context, t testing.TB, cri runtimeapi.RuntimeServiceClient, cgroupParent,
	hostLogDir, name, uid string) *Pod {
	t.Helper()
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Uid: uid, Namespace: "default"},
		Hostname:     name,
		LogDirectory: "/var/log/lpm/" + uid,
		Labels: map[string]string{"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": "default",
			"io.kubernetes.pod.uid": uid},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent:    cgroupParent + "/" + uid,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: namespaces()},
		},
	}
	if err := os.MkdirAll(filepath.Join(hostLogDir, uid), 0o755); err != nil {
		t.Fatal(err)
	}
	resp, err := cri.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("RunPodSandbox(%s) error = %v", name, err)
	}
	return &Pod{ID: resp.GetPodSandboxId(), Config: cfg, LogDir: filepath.Join(hostLogDir, uid)}
}

// namespaces are the kubelet's defaults for a pod without
// shareProcessNamespace: each container has its own PID namespace. (The
// CRI's zero value would share the pod's, where a restored process's PID
// can be taken.)
func namespaces() *runtimeapi.NamespaceOption {
	return &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD,
		Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_POD}
}

// StartContainer creates and starts a container in the pod and returns its
// ID. For a checkpoint image, CreateContainer restores.
func StartContainer(ctx context.Context, t testing.TB, cri runtimeapi.RuntimeServiceClient, pod *Pod,
	name, image string) string {
	t.Helper()
	id, err := CreateAndStart(ctx, cri, pod, name, image)
	if err != nil {
		t.Fatalf("failed to start container %s from %s: %v", name, image, err)
	}
	return id
}

// CreateAndStart creates and starts a container in the pod; args, when
// given, replace the image's arguments.
func CreateAndStart(ctx context.Context, cri runtimeapi.RuntimeServiceClient, pod *Pod, name,
	image string, args ...string) (string, error) {
	return CreateAndStartAs(ctx, cri, pod, name, image, nil, args...)
}

// CreateAndStartAs is CreateAndStart with the container's user, when uid
// is set.
func CreateAndStartAs(ctx context.Context, cri runtimeapi.RuntimeServiceClient, pod *Pod, name,
	image string, uid *int64, args ...string) (string, error) {
	security := &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: namespaces()}
	if uid != nil {
		security.RunAsUser = &runtimeapi.Int64Value{Value: *uid}
	}
	resp, err := cri.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: pod.ID,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name},
			Image:    &runtimeapi.ImageSpec{Image: image},
			Args:     args,
			LogPath:  name + ".log",
			Labels: map[string]string{"io.kubernetes.container.name": name,
				"io.kubernetes.pod.name": pod.Config.Metadata.Name, "io.kubernetes.pod.namespace": "default",
				"io.kubernetes.pod.uid": pod.Config.Metadata.Uid},
			Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: security},
		},
		SandboxConfig: pod.Config,
	})
	if err != nil {
		return "", fmt.Errorf("CreateContainer: %w", err)
	}
	id := resp.GetContainerId()
	if _, err := cri.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		return id, fmt.Errorf("StartContainer: %w", err)
	}
	return id, nil
}

// StopPod stops and removes a pod sandbox and its containers.
func StopPod(ctx context.Context, t testing.TB, cri runtimeapi.RuntimeServiceClient, pod *Pod) {
	t.Helper()
	if _, err := cri.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.ID}); err != nil {
		t.Errorf("StopPodSandbox error = %v", err)
	}
	if _, err := cri.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.ID}); err != nil {
		t.Errorf("RemovePodSandbox error = %v", err)
	}
}

var countPattern = regexp.MustCompile(`count=(\d+) pid=(\d+)`)

// Counts returns every count a container's log holds, in order.
func Counts(t testing.TB, logPath string) []int {
	t.Helper()
	f, err := os.Open(logPath)
	if err != nil {
		return nil
	}
	defer func() { _ = f.Close() }()
	var counts []int
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		if m := countPattern.FindStringSubmatch(scanner.Text()); m != nil {
			n, _ := strconv.Atoi(m[1])
			counts = append(counts, n)
		}
	}
	return counts
}

// WaitForCount waits until the container's log shows a count of at least
// min and returns the last count.
func WaitForCount(t testing.TB, logPath string, min int, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		counts := Counts(t, logPath)
		if len(counts) > 0 && counts[len(counts)-1] >= min {
			return counts[len(counts)-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("log %s did not reach count %d within %s; counts %v", logPath, min, timeout, counts)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
