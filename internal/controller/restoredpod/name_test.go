package restoredpod

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

func podNamed(name string, restored bool) *corev1.Pod {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if restored {
		pod.Annotations = map[string]string{lpmv1.AnnotationMigrationUID: "earlier"}
	}
	return pod
}

func TestName(t *testing.T) {
	long := strings.Repeat("a", 60)
	testCases := []struct {
		name     string
		source   string
		restored bool
		want     string
	}{
		{name: "plain pod gets suffix", source: "web", want: "web-restored"},
		{name: "restored pod gets stem back", source: "web-restored", restored: true, want: "web"},
		{name: "restored pod without suffix gets suffix", source: "web", restored: true, want: "web-restored"},
		{name: "restored fallback name gets stem back", source: "web-restored-3f2a9", restored: true, want: "web"},
		{
			name:   "suffixed pod not restored by lpm gets suffix",
			source: "web-restored", want: "web-restored-restored",
		},
		{name: "long name cut to 63", source: long, want: strings.Repeat("a", 54) + "-restored"},
		{
			name:   "cut does not end in separator",
			source: strings.Repeat("a", 53) + "-b.c", want: strings.Repeat("a", 53) + "-restored",
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			got := Name(podNamed(tc.source, tc.restored))
			if got != tc.want {
				t.Errorf("Name(%q) = %q, want %q", tc.source, got, tc.want)
			}
			if len(got) > MaxNameLength {
				t.Errorf("Name(%q) has %d characters, more than %d", tc.source, len(got), MaxNameLength)
			}
		})
	}
}

// A pod moved A -> B -> A -> B alternates between two names.
func TestNameRoundTrip(t *testing.T) {
	pod := podNamed("web", false)
	var got []string
	for range 4 {
		name := Name(pod)
		got = append(got, name)
		pod = podNamed(name, true)
	}
	want := []string{"web-restored", "web", "web-restored", "web"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("names over four hops mismatch (-want +got):\n%s", diff)
	}
}

func TestChooseName(t *testing.T) {
	const uid = "3F2A9C1E-0000-4000-8000-000000000001"
	testCases := []struct {
		name     string
		source   *corev1.Pod
		taken    []string
		want     string
		wantFree bool
	}{
		{name: "preferred name free", source: podNamed("web", false), want: "web-restored", wantFree: true},
		{
			name:   "clone of a clone falls back",
			source: podNamed("web", false), taken: []string{"web-restored"},
			want: "web-restored-3f2a9", wantFree: true,
		},
		{
			name:   "original still present falls back",
			source: podNamed("web-restored", true), taken: []string{"web"},
			want: "web-restored-3f2a9", wantFree: true,
		},
		{
			name:   "long name fallback cut to 63",
			source: podNamed(strings.Repeat("b", 70), false), taken: []string{strings.Repeat("b", 54) + "-restored"},
			want: strings.Repeat("b", 48) + "-restored-3f2a9", wantFree: true,
		},
		{
			name:   "both names taken",
			source: podNamed("web", false), taken: []string{"web-restored", "web-restored-3f2a9"},
		},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			taken := func(name string) bool {
				for _, n := range tc.taken {
					if n == name {
						return true
					}
				}
				return false
			}
			got, free := ChooseName(tc.source, uid, taken)
			if got != tc.want || free != tc.wantFree {
				t.Errorf("ChooseName() = %q, %v, want %q, %v", got, free, tc.want, tc.wantFree)
			}
			if errs := validation.IsDNS1123Label(got); got != "" && len(errs) != 0 {
				t.Errorf("ChooseName() = %q, not a DNS label: %v", got, errs)
			}
		})
	}
}

func TestHostname(t *testing.T) {
	testCases := []struct {
		name string
		in   string
		want string
	}{
		{name: "short name", in: "web", want: "web"},
		{name: "63 characters kept", in: strings.Repeat("a", 63), want: strings.Repeat("a", 63)},
		{name: "cut and trimmed", in: strings.Repeat("a", 61) + "-.b", want: strings.Repeat("a", 61)},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Hostname(tc.in); got != tc.want {
				t.Errorf("Hostname(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
