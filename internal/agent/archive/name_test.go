package archive

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseContainerName(t *testing.T) {
	cases := []struct {
		name    string
		want    ContainerName
		wantErr bool
	}{
		{name: "counter_web_default_0d1e-2f_0",
			want: ContainerName{Container: "counter", Pod: "web", Namespace: "default", PodUID: "0d1e-2f"}},
		{name: "app_web.example_prod_uid_3",
			want: ContainerName{Container: "app", Pod: "web.example", Namespace: "prod", PodUID: "uid", Attempt: 3}},
		{name: "k8s_app_web_prod_uid_1",
			want: ContainerName{Container: "app", Pod: "web", Namespace: "prod", PodUID: "uid", Attempt: 1}},
		{name: "containerd", wantErr: true},
		{name: "counter", wantErr: true},
		{name: "counter_web_default_uid", wantErr: true},
		{name: "counter_web_default_uid_0_extra", wantErr: true},
		{name: "counter__default_uid_0", wantErr: true},
		{name: "counter_web_default_uid_x", wantErr: true},
		{name: "counter_web_default_uid_-1", wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseContainerName(tc.name)
			if tc.wantErr {
				var archiveErr *Error
				if !errors.As(err, &archiveErr) {
					t.Fatalf("ParseContainerName() error = %v, want an *Error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseContainerName() error = %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseContainerName() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestContainerNameString(t *testing.T) {
	const name = "counter_web_default_0d1e-2f_2"
	parsed, err := ParseContainerName(name)
	if err != nil {
		t.Fatal(err)
	}
	if got := parsed.String(); got != name {
		t.Errorf("String() = %q, want %q", got, name)
	}
}
