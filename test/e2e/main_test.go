//go:build e2e

// Package e2e is lpm's end-to-end suite. It runs against a lab started by
// `lpm-lab up` and `lpm-lab install` (make e2e does both) and asserts what
// a user observes: pods, counts, logs, Services and files on the nodes.
// LPM_LAB_NAME names the lab (default "e2e"); the suite must run as root
// from the repository, which owns the lab's files.
package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/lab"
	"github.com/lpm-dev/lpm/lab/cluster"
	"github.com/lpm-dev/lpm/lab/workload"
)

var (
	theLab  *cluster.Lab
	clients *workload.Clients
	// nodeA and nodeB are the lab's two nodes.
	nodeA, nodeB string
)

func TestMain(m *testing.M) {
	opts := lab.DefaultOptions()
	opts.Name = "e2e"
	if name := os.Getenv("LPM_LAB_NAME"); name != "" {
		opts.Name = name
	}
	// The suite runs in test/e2e; the lab's files are found from the
	// repository root.
	if wd, err := os.Getwd(); err == nil && filepath.Base(wd) == "e2e" {
		opts.RepoDir = filepath.Dir(filepath.Dir(wd))
		_ = os.Chdir(opts.RepoDir)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "the e2e suite needs root and a running lab: run make e2e")
		os.Exit(1)
	}
	l, err := lab.Open(opts)
	if err == nil {
		var cfg = must(l.RESTConfig())
		clients, err = workload.NewClients(cfg)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "lab %q is not usable: %v; run make e2e\n", opts.Name, err)
		os.Exit(1)
	}
	theLab = l
	nodeA, nodeB = l.Instance().NodeName(0), l.Instance().NodeName(1)
	os.Exit(m.Run())
}

func must[T any](v T, err error) T {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	return v
}

func testContext(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// newNamespace creates a namespace for one test and deletes it, with
// everything in it, when the test ends.
func newNamespace(t *testing.T) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 50 {
		name = name[:50]
	}
	name = strings.TrimRight(name, "-") + fmt.Sprintf("-%d", time.Now().UnixNano()%100000)
	ctx := testContext(t, time.Minute)
	if err := clients.EnsureNamespace(ctx, name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		deleteMigrations(ctx, t, name)
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if err := clients.Client.Delete(ctx, ns); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("failed to delete namespace %s: %v", name, err)
		}
	})
	return name
}

func deleteMigrations(ctx context.Context, t *testing.T, namespace string) {
	pms := &lpmv1.PodMigrationList{}
	if err := clients.Client.List(ctx, pms, client.InNamespace(namespace)); err != nil {
		return
	}
	for i := range pms.Items {
		_ = clients.Client.Delete(ctx, &pms.Items[i])
	}
}

// createPod creates a pod and waits until it is Ready.
func createPod(t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	ctx := testContext(t, 2*time.Minute)
	if err := clients.Client.Create(ctx, pod); err != nil {
		t.Fatalf("failed to create pod %s: %v", pod.Name, err)
	}
	ready, err := clients.WaitPodReady(ctx, pod.Namespace, pod.Name, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return ready
}

func getPod(t *testing.T, namespace, name string) (*corev1.Pod, error) {
	t.Helper()
	pod := &corev1.Pod{}
	err := clients.Client.Get(testContext(t, 30*time.Second), client.ObjectKey{Namespace: namespace, Name: name}, pod)
	return pod, err
}

// podClient talks to the test pods. It keeps no idle connection open: CRIU
// (through containerd's CRI checkpoint) cannot dump a process with an
// established TCP connection, so a kept-alive connection would fail the
// next migration.
var podClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// httpGet returns the body of GET http://podIP:8080/path. The host routes
// to every pod CIDR of the lab through the lab bridge.
func httpGet(t *testing.T, podIP, path string) (string, error) {
	t.Helper()
	resp, err := podClient.Get(fmt.Sprintf("http://%s:8080%s", podIP, path))
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("GET %s on %s: %s: %s", path, podIP, resp.Status, body)
	}
	return strings.TrimSpace(string(body)), err
}

func httpPut(t *testing.T, podIP, path, body string) error {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, fmt.Sprintf("http://%s:8080%s", podIP, path), strings.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := podClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("PUT %s on %s: %s: %s", path, podIP, resp.Status, data)
	}
	return nil
}

// count returns the counter's current count over HTTP.
func count(t *testing.T, podIP string) int {
	t.Helper()
	body, err := httpGet(t, podIP, "/count")
	if err != nil {
		t.Fatalf("failed to read the count of %s: %v", podIP, err)
	}
	var n int
	if _, err := fmt.Sscan(body, &n); err != nil {
		t.Fatalf("invalid count %q from %s", body, podIP)
	}
	return n
}

// requireCounting fails unless the counter at podIP counts on within a few
// seconds.
func requireCounting(t *testing.T, podIP string) int {
	t.Helper()
	first := count(t, podIP)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(time.Second)
		if n := count(t, podIP); n > first {
			return n
		}
	}
	t.Fatalf("counter at %s does not count: stuck at %d", podIP, first)
	return 0
}

// waitCounting waits until the counter at podIP answers and counts on.
func waitCounting(t *testing.T, podIP string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		first, err := httpGet(t, podIP, "/count")
		if err == nil {
			time.Sleep(1500 * time.Millisecond)
			if second, err := httpGet(t, podIP, "/count"); err == nil && second != first {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("counter at %s does not count %s later: %v", podIP, timeout, err)
		}
		time.Sleep(time.Second)
	}
}

// kubectl runs kubectl against the lab and returns its output.
func kubectl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := lab.Kubectl(testContext(t, 2*time.Minute), theLab, args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
