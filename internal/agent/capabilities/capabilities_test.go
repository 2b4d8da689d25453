package capabilities

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/lpm-dev/lpm/internal/agent/runtime"
)

func TestRestoreViaCreateProblem(t *testing.T) {
	cases := []struct {
		name    string
		info    runtime.Info
		wantErr bool
	}{
		{name: "2.1 restores without the option", info: runtime.Info{Version: "v2.1.4"}},
		{name: "2.3 with the option", info: runtime.Info{Version: "v2.3.7", RestoreViaCreate: true}},
		{name: "2.3 without the option", info: runtime.Info{Version: "v2.3.7"}, wantErr: true},
		{name: "2.2 without the option", info: runtime.Info{Version: "2.2.0"}, wantErr: true},
		{name: "2.4 removed it", info: runtime.Info{Version: "v2.4.2", RestoreViaCreate: true}, wantErr: true},
		{name: "1.7 predates it", info: runtime.Info{Version: "1.7.35"}, wantErr: true},
		{name: "unreadable version", info: runtime.Info{Version: "main"}, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			problem := restoreViaCreateProblem(&tc.info)
			if (problem != "") != tc.wantErr {
				t.Errorf("restoreViaCreateProblem() = %q, want a problem: %v", problem, tc.wantErr)
			}
		})
	}
}

func TestCRIUVersion(t *testing.T) {
	cases := []struct {
		out        string
		want       string
		wantNumber int
	}{
		{out: "Version: 4.1.1\n", want: "4.1.1", wantNumber: 40101},
		{out: "Version: 3.17\nGitID: v3.17", want: "3.17", wantNumber: 31700},
		{out: "garbage", want: "garbage", wantNumber: 0},
	}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			got := parseCRIUVersion(tc.out)
			if got != tc.want {
				t.Errorf("parseCRIUVersion() = %q, want %q", got, tc.want)
			}
			if n := criuVersionNumber(got); n != tc.wantNumber {
				t.Errorf("criuVersionNumber(%q) = %d, want %d", got, n, tc.wantNumber)
			}
		})
	}
}

func TestProcReaders(t *testing.T) {
	dir := t.TempDir()
	cpuinfo := "processor\t: 0\nflags\t\t: sse2 avx2 fpu avx2 aes\n\nprocessor\t: 1\nflags\t\t: other\n"
	if err := os.WriteFile(filepath.Join(dir, "cpuinfo"), []byte(cpuinfo), 0o600); err != nil {
		t.Fatal(err)
	}
	status := "Name:\tcontainerd\nCapEff:\t000001fffeffffff\n"
	if err := os.WriteFile(filepath.Join(dir, "status"), []byte(status), 0o600); err != nil {
		t.Fatal(err)
	}

	if diff := cmp.Diff([]string{"aes", "avx2", "fpu", "sse2"}, cpuFeatures(filepath.Join(dir, "cpuinfo"))); diff != "" {
		t.Errorf("cpuFeatures() mismatch (-want +got):\n%s", diff)
	}
	// 000001fffeffffff lacks bit 24, CAP_SYS_RESOURCE, as root on a
	// restricted machine does.
	if hasCapability(filepath.Join(dir, "status"), capSysResource) {
		t.Error("hasCapability(CAP_SYS_RESOURCE) = true, want false")
	}
	if !hasCapability(filepath.Join(dir, "status"), 21) {
		t.Error("hasCapability(CAP_SYS_ADMIN) = false, want true")
	}
}
