package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// runAsMainEnv makes the test binary run main instead of the tests, so the
// tests can run the real program, signals and exit status included.
const runAsMainEnv = "LPM_TEST_RUN_KUBECTL_MIGRATE"

var (
	testKubeconfig string
	testClient     client.Client
)

func TestMain(m *testing.M) {
	if os.Getenv(runAsMainEnv) == "1" {
		main()
		return
	}
	os.Exit(runTests(m))
}

// runTests starts a test API server when KUBEBUILDER_ASSETS names its
// binaries, for the tests that need one, and runs the tests.
func runTests(m *testing.M) int {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return m.Run()
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "failed to start the test API server: %v\n", err)
		return 1
	}
	defer func() { _ = env.Stop() }()

	user, err := env.AddUser(envtest.User{Name: "lpm-main-test", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "failed to add the test user: %v\n", err)
		return 1
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		fmt.Fprintf(os.Stderr, "failed to write the test kubeconfig: %v\n", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "lpm-main-test-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "failed to create a temporary directory: %v\n", err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	testKubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(testKubeconfig, kubeconfig, 0o600); err != nil {
		fmt.Fprintf(os.Stderr, "failed to write the test kubeconfig: %v\n", err)
		return 1
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(lpmv1.AddToScheme(scheme))
	if testClient, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintf(os.Stderr, "failed to create the test client: %v\n", err)
		return 1
	}
	return m.Run()
}

// command returns the test binary set up to run main with args.
func command(ctx context.Context, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), runAsMainEnv+"=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	return cmd, &stdout, &stderr
}

// exitStatus returns the exit status of a finished command.
func exitStatus(t *testing.T, err error) int {
	t.Helper()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exitErr):
		return exitErr.ExitCode()
	default:
		t.Fatalf("failed to run kubectl-migrate: %v", err)
		return -1
	}
}

func TestMainExitStatus(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantStatus int
		wantStdout string
		wantStderr string
	}{
		{name: "client version", args: []string{"version", "--client"}, wantStatus: 0,
			wantStdout: "Client Version: "},
		{name: "missing pod name", args: []string{"pod"}, wantStatus: 2,
			wantStderr: "error: missing pod name: run 'kubectl migrate pod NAME'\n"},
		{name: "unknown command", args: []string{"move"}, wantStatus: 2,
			wantStderr: "error: unknown command \"move\" for \"kubectl migrate\""},
		{name: "unknown flag", args: []string{"list", "--bogus"}, wantStatus: 2,
			wantStderr: "error: unknown flag: --bogus\nSee 'kubectl migrate list --help' for usage\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd, stdout, stderr := command(ctx, tc.args...)
			status := exitStatus(t, cmd.Run())
			if status != tc.wantStatus {
				t.Errorf("exit status = %d, want %d (stderr %q)", status, tc.wantStatus, stderr)
			}
			if !strings.HasPrefix(stdout.String(), tc.wantStdout) {
				t.Errorf("stdout = %q, want it to start with %q", stdout, tc.wantStdout)
			}
			if !strings.HasPrefix(stderr.String(), tc.wantStderr) {
				t.Errorf("stderr = %q, want it to start with %q", stderr, tc.wantStderr)
			}
		})
	}
}

func TestMainInterruptStopsWaitOnly(t *testing.T) {
	if testClient == nil {
		if os.Getenv("CI") != "" {
			t.Fatal("KUBEBUILDER_ASSETS is not set: run hack/test.sh")
		}
		t.Skip("KUBEBUILDER_ASSETS is not set: run hack/test.sh, which builds etcd and kube-apiserver")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "lpm-main-interrupt"}}
	if err := testClient.Create(ctx, ns); err != nil {
		t.Fatalf("failed to create namespace: %v", err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "web"},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{
			{Name: "app", Image: "registry.example.com/app"}}},
	}
	if err := testClient.Create(ctx, pod); err != nil {
		t.Fatalf("failed to create pod: %v", err)
	}

	cmd, stdout, stderr := command(ctx, "--kubeconfig", testKubeconfig, "--cache-dir", t.TempDir(),
		"-n", ns.Name, "pod", "web")
	if err := cmd.Start(); err != nil {
		t.Fatalf("failed to start kubectl-migrate: %v", err)
	}

	// Interrupt once the PodMigration exists: no controller runs, so the
	// command would wait for 30 minutes otherwise.
	var created lpmv1.PodMigration
	for {
		list := &lpmv1.PodMigrationList{}
		if err := testClient.List(ctx, list, client.InNamespace(ns.Name)); err != nil {
			t.Fatalf("failed to list PodMigrations: %v", err)
		}
		if len(list.Items) > 0 {
			created = list.Items[0]
			break
		}
		if ctx.Err() != nil {
			t.Fatal("kubectl-migrate created no PodMigration")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatalf("failed to send SIGINT: %v", err)
	}
	status := exitStatus(t, cmd.Wait())

	if status != 130 {
		t.Errorf("exit status = %d, want 130 (stderr %q)", status, stderr)
	}
	wantTail := "Stopped watching. PodMigration " + created.Name + " is in phase Pending and goes on.\n" +
		"To follow it: kubectl migrate status " + created.Name + " -n " + ns.Name + "\n" +
		"To cancel it: kubectl migrate cancel " + created.Name + " -n " + ns.Name + "\n"
	if !strings.HasSuffix(stdout.String(), wantTail) {
		t.Errorf("stdout = %q, want it to end with %q", stdout, wantTail)
	}
	current := &lpmv1.PodMigration{}
	if err := testClient.Get(ctx, client.ObjectKeyFromObject(&created), current); err != nil {
		t.Fatalf("PodMigration is gone after the interrupt: %v", err)
	}
	if current.DeletionTimestamp != nil {
		t.Error("the interrupt deleted the PodMigration; it must only stop the wait")
	}
}
