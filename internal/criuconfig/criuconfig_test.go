package criuconfig

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

func TestParse(t *testing.T) {
	data := "# runc's CRIU options\n" +
		"tcp-established\n" +
		"--ghost-limit 10M   # for Java\n" +
		"log-file=/var/log/criu.log\n" +
		"\n" +
		"  manage-cgroups \"soft\"\n"
	want := []string{"tcp-established", "ghost-limit=10M", "log-file=/var/log/criu.log", "manage-cgroups=soft"}

	got := Parse(data)

	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Parse() (-want +got):\n%s", diff)
	}
}

func TestGhostLimit(t *testing.T) {
	tests := []struct {
		name    string
		options []string
		want    int64
	}{
		{name: "unset", options: []string{"tcp-established"}, want: 0},
		{name: "bytes", options: []string{"ghost-limit=4096"}, want: 4096},
		{name: "kibibytes", options: []string{"ghost-limit=512K"}, want: 512 << 10},
		{name: "mebibytes", options: []string{"ghost-limit=10M"}, want: 10 << 20},
		{name: "gibibytes", options: []string{"ghost-limit=1G"}, want: 1 << 30},
		{name: "last wins", options: []string{"ghost-limit=1M", "ghost-limit=2M"}, want: 2 << 20},
		{name: "invalid", options: []string{"ghost-limit=lots"}, want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files := []lpmv1.CRIUConfigFile{{Path: "/etc/criu/runc.conf", Options: tc.options}}
			if got := GhostLimit(files); got != tc.want {
				t.Errorf("GhostLimit() = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestProblem(t *testing.T) {
	tests := []struct {
		name        string
		options     []string
		wantProblem bool
	}{
		{name: "no options"},
		{name: "harmless options", options: []string{"tcp-established", "ghost-limit=10M", "log-file=/x"}},
		{name: "images-dir", options: []string{"images-dir=/srv/ckpt"}, wantProblem: true},
		{name: "work-dir", options: []string{"work-dir=/srv/work"}, wantProblem: true},
		{name: "tcp-close", options: []string{"tcp-close", "skip-in-flight"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Problem([]lpmv1.CRIUConfigFile{{Path: "/etc/criu/runc.conf", Options: tc.options}})
			if (got != "") != tc.wantProblem {
				t.Errorf("Problem() = %q, want a problem: %v", got, tc.wantProblem)
			}
		})
	}
}

func TestClosesTCP(t *testing.T) {
	tests := []struct {
		name  string
		files []lpmv1.CRIUConfigFile
		want  bool
	}{
		{name: "no files"},
		{name: "other options", files: []lpmv1.CRIUConfigFile{{Path: "/etc/criu/runc.conf",
			Options: []string{"tcp-established", "skip-in-flight"}}}},
		{name: "tcp-close", files: []lpmv1.CRIUConfigFile{{Path: "/etc/criu/runc.conf",
			Options: []string{"skip-in-flight", "tcp-close"}}}, want: true},
		{name: "tcp-close in a second file", files: []lpmv1.CRIUConfigFile{
			{Path: "/etc/criu/runc.conf", Options: []string{"log-file=/x"}},
			{Path: "/etc/criu/default.conf", Options: []string{"tcp-close"}}}, want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ClosesTCP(tc.files); got != tc.want {
				t.Errorf("ClosesTCP() = %v, want %v", got, tc.want)
			}
		})
	}
}
