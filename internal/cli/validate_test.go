package cli

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

func TestBuildSpec(t *testing.T) {
	tests := []struct {
		name     string
		request  migrationRequest
		wantSpec lpmv1.PodMigrationSpec
		// wantErr is a substring of the expected usage error.
		wantErr string
	}{
		{
			name:     "pod only",
			request:  migrationRequest{podName: "web"},
			wantSpec: lpmv1.PodMigrationSpec{PodName: "web"},
		},
		{
			name: "every flag",
			request: migrationRequest{podName: "web", targetNode: "worker-2", keep: true, dryRun: true,
				timeout: 10 * time.Minute, timeoutSet: true, settle: 0, settleSet: true},
			wantSpec: lpmv1.PodMigrationSpec{
				PodName: "web", TargetNode: "worker-2", SourcePolicy: lpmv1.SourcePolicyKeep, DryRun: true,
				Timeouts: &lpmv1.Timeouts{Overall: &metav1.Duration{Duration: 10 * time.Minute}},
				Settle:   &metav1.Duration{},
			},
		},
		{
			name:     "direct transfer",
			request:  migrationRequest{podName: "web", transfer: "Direct"},
			wantSpec: lpmv1.PodMigrationSpec{PodName: "web", Transfer: &lpmv1.Transfer{Mode: lpmv1.TransferModeDirect}},
		},
		{
			name: "registry transfer with pull secret",
			request: migrationRequest{podName: "web", transfer: "registry",
				registry: "registry.example.com:5000/ops/checkpoints", pullSecret: "creds"},
			wantSpec: lpmv1.PodMigrationSpec{PodName: "web", Transfer: &lpmv1.Transfer{
				Mode: lpmv1.TransferModeRegistry,
				Registry: &lpmv1.RegistryTransfer{
					Repository: "registry.example.com:5000/ops/checkpoints", PullSecretName: "creds"},
			}},
		},
		{
			name:    "registry alone",
			request: migrationRequest{podName: "web", registry: "registry.example.com/ops"},
			wantErr: "--registry needs --transfer registry",
		},
		{
			name:    "repository without a registry host",
			request: migrationRequest{podName: "web", transfer: "registry", registry: "foo"},
			wantErr: "must start with the registry's host",
		},
		{
			name:    "repository on Docker Hub by default",
			request: migrationRequest{podName: "web", transfer: "registry", registry: "team/checkpoints"},
			wantErr: "must start with the registry's host",
		},
		{
			name:    "repository on localhost",
			request: migrationRequest{podName: "web", transfer: "registry", registry: "localhost/ops"},
			wantSpec: lpmv1.PodMigrationSpec{PodName: "web", Transfer: &lpmv1.Transfer{
				Mode: lpmv1.TransferModeRegistry, Registry: &lpmv1.RegistryTransfer{Repository: "localhost/ops"},
			}},
		},
		{
			name:    "empty pod name",
			request: migrationRequest{},
			wantErr: "missing pod name",
		},
		{
			name:    "invalid pod name",
			request: migrationRequest{podName: "Web_1"},
			wantErr: `invalid pod name "Web_1"`,
		},
		{
			name:    "invalid target node",
			request: migrationRequest{podName: "web", targetNode: "-worker"},
			wantErr: `invalid --to "-worker"`,
		},
		{
			name:    "unknown transfer mode",
			request: migrationRequest{podName: "web", transfer: "ftp"},
			wantErr: `invalid --transfer "ftp": must be direct or registry`,
		},
		{
			name:    "registry without repository",
			request: migrationRequest{podName: "web", transfer: "registry"},
			wantErr: "--transfer registry needs --registry REPOSITORY",
		},
		{
			name:    "registry with direct transfer",
			request: migrationRequest{podName: "web", transfer: "direct", registry: "registry.example.com/ops"},
			wantErr: "--registry is only valid with --transfer registry",
		},
		{
			name:    "pull secret without registry",
			request: migrationRequest{podName: "web", pullSecret: "creds"},
			wantErr: "--pull-secret needs --transfer registry",
		},
		{
			name:    "repository with a tag",
			request: migrationRequest{podName: "web", transfer: "registry", registry: "registry.example.com/ops:latest"},
			wantErr: "without a tag or digest",
		},
		{
			name:    "repository with a digest",
			request: migrationRequest{podName: "web", transfer: "registry", registry: "registry.example.com/ops@sha256:00"},
			wantErr: "without a tag or digest",
		},
		{
			name:    "negative timeout",
			request: migrationRequest{podName: "web", timeout: -5 * time.Second, timeoutSet: true},
			wantErr: "invalid --timeout -5s: must be between 1s and 12h",
		},
		{
			name:    "zero timeout",
			request: migrationRequest{podName: "web", timeoutSet: true},
			wantErr: "invalid --timeout 0s",
		},
		{
			name:    "timeout above maximum",
			request: migrationRequest{podName: "web", timeout: 13 * time.Hour, timeoutSet: true},
			wantErr: "invalid --timeout 13h0m0s",
		},
		{
			name:    "negative settle",
			request: migrationRequest{podName: "web", settle: -time.Second, settleSet: true},
			wantErr: "invalid --settle -1s: must be between 0s and 10m",
		},
		{
			name: "invalid pull secret name",
			request: migrationRequest{podName: "web", transfer: "registry", registry: "registry.example.com/ops",
				pullSecret: "Creds!"},
			wantErr: `invalid --pull-secret "Creds!"`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := tc.request.buildSpec()
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("buildSpec() = %+v, want an error containing %q", spec, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("buildSpec() error = %q, want it to contain %q", err, tc.wantErr)
				}
				if code := exitCode(err); code != ExitUsage {
					t.Errorf("exitCode(%v) = %d, want %d", err, code, ExitUsage)
				}
				return
			}
			if err != nil {
				t.Fatalf("buildSpec() error = %v", err)
			}
			if diff := cmp.Diff(tc.wantSpec, spec); diff != "" {
				t.Errorf("buildSpec() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseCheckTarget(t *testing.T) {
	tests := []struct {
		arg      string
		wantPod  string
		wantNode string
		wantErr  string
	}{
		{arg: "web", wantPod: "web"},
		{arg: "pod/web", wantPod: "web"},
		{arg: "po/web", wantPod: "web"},
		{arg: "node/worker-1", wantNode: "worker-1"},
		{arg: "nodes/worker-1", wantNode: "worker-1"},
		{arg: "Node/worker-1", wantNode: "worker-1"},
		{arg: "deployment/web", wantErr: "expected POD, pod/POD or node/NODE"},
		{arg: "node/", wantErr: "missing node name"},
		{arg: "node/Worker_1", wantErr: `invalid node name "Worker_1"`},
	}
	for _, tc := range tests {
		t.Run(tc.arg, func(t *testing.T) {
			pod, node, err := parseCheckTarget(tc.arg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseCheckTarget(%q) error = %v, want one containing %q", tc.arg, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseCheckTarget(%q) error = %v", tc.arg, err)
			}
			if pod != tc.wantPod {
				t.Errorf("pod = %q, want %q", pod, tc.wantPod)
			}
			if node != tc.wantNode {
				t.Errorf("node = %q, want %q", node, tc.wantNode)
			}
		})
	}
}

func TestPodNameFromArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    string
		wantErr string
	}{
		{name: "one name", args: []string{"web"}, want: "web"},
		{name: "no name", wantErr: "missing pod name: run 'kubectl migrate pod NAME'"},
		{name: "two names", args: []string{"web", "db"}, wantErr: "expected one pod name, got 2 arguments: web db"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := podNameFromArgs(tc.args, "kubectl migrate pod")
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("podNameFromArgs() error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("podNameFromArgs() = %q, %v, want %q", got, err, tc.want)
			}
		})
	}
}

func TestValidateOutput(t *testing.T) {
	for _, format := range []string{"", "json", "yaml"} {
		if err := validateOutput(format); err != nil {
			t.Errorf("validateOutput(%q) = %v, want nil", format, err)
		}
	}
	err := validateOutput("wide")
	if err == nil || err.Error() != `invalid --output "wide": must be json or yaml` {
		t.Errorf("validateOutput(wide) = %v", err)
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{name: "nil", want: ExitOK},
		{name: "plain error", err: errors.New("boom"), want: ExitFailed},
		{name: "usage error", err: usageErrorf("bad"), want: ExitUsage},
		{name: "wrapped reported error", err: errors.Join(reportedError(ExitWaitTimedOut, errors.New("late"))),
			want: ExitWaitTimedOut},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := exitCode(tc.err); got != tc.want {
				t.Errorf("exitCode() = %d, want %d", got, tc.want)
			}
		})
	}
}
