package capabilities

import (
	"testing"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

func TestRseqRestore(t *testing.T) {
	tests := []struct {
		name    string
		kernel  string
		criu    int
		hasRseq bool
		want    bool
	}{
		{name: "new kernel and CRIU", kernel: "6.18.44", criu: 40201, hasRseq: true, want: true},
		{name: "exactly 5.13", kernel: "5.13.0-1", criu: 31700, hasRseq: true, want: true},
		{name: "kernel without ptrace request", kernel: "5.10.0", criu: 40201, hasRseq: true},
		{name: "CRIU before 3.17", kernel: "6.1.0", criu: 31600, hasRseq: true},
		{name: "no rseq system call", kernel: "6.1.0", criu: 40201},
		{name: "unreadable kernel", kernel: "custom", criu: 40201, hasRseq: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := rseqRestore(tc.kernel, tc.criu, tc.hasRseq); got != tc.want {
				t.Errorf("rseqRestore() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRestoreIntoNewCgroup(t *testing.T) {
	tests := []struct {
		name    string
		runtime string
		version string
		options []string
		want    bool
	}{
		{name: "runc 1.3", runtime: "runc", version: "1.3.0", want: true},
		{name: "crun 1.19", runtime: "crun", version: "1.19", want: true},
		{name: "runc before 1.0", runtime: "runc", version: "0.1.1"},
		{name: "unknown runtime", runtime: "kata-runtime", version: "3.0"},
		{name: "manage-cgroups ignore", runtime: "runc", version: "1.3.0", options: []string{"manage-cgroups=ignore"}},
		{name: "manage-cgroups soft", runtime: "runc", version: "1.3.0", options: []string{"manage-cgroups=soft"},
			want: true},
		{name: "cgroup-root", runtime: "runc", version: "1.3.0", options: []string{"cgroup-root=/old"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			config := []lpmv1.CRIUConfigFile{{Path: "/etc/criu/runc.conf", Options: tc.options}}
			if got := restoreIntoNewCgroup(tc.runtime, tc.version, config); got != tc.want {
				t.Errorf("restoreIntoNewCgroup() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestKernelHasRseq(t *testing.T) {
	// Every kernel this project supports (5.13 and later) has rseq.
	if !kernelHasRseq() {
		t.Error("kernelHasRseq() = false on a kernel with rseq")
	}
}
