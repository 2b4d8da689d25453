package preflight

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

func criuAgent(name string, mutate func(*lpmv1.NodeCapabilities)) *lpmv1.NodeAgent {
	caps := &lpmv1.NodeCapabilities{RuntimeName: "containerd", RuntimeVersion: "v2.3.7", OCIRuntime: "runc",
		OCIRuntimeVersion: "1.3.0", CRIUVersion: "4.2.1", CRIUFeatures: []string{"uffd", nftablesFeature},
		RseqRestore: true, RestoreIntoNewCgroup: ptr.To(true),
		CRIUConfig: []lpmv1.CRIUConfigFile{{Path: "/etc/criu/runc.conf", Options: []string{"tcp-established"}}}}
	if mutate != nil {
		mutate(caps)
	}
	return &lpmv1.NodeAgent{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: lpmv1.NodeAgentStatus{Capabilities: caps}}
}

func TestCheckCRIUCompatible(t *testing.T) {
	tests := []struct {
		name       string
		source     func(*lpmv1.NodeCapabilities)
		target     func(*lpmv1.NodeCapabilities)
		wantReason lpmv1.Reason
	}{
		{name: "equal nodes pass"},
		{name: "newer target CRIU passes", target: func(c *lpmv1.NodeCapabilities) { c.CRIUVersion = "4.3" }},
		{
			name:       "older target CRIU rejected",
			target:     func(c *lpmv1.NodeCapabilities) { c.CRIUVersion = "4.1.1" },
			wantReason: lpmv1.ReasonIncompatibleCRIU,
		},
		{
			name:       "different OCI runtime rejected",
			target:     func(c *lpmv1.NodeCapabilities) { c.OCIRuntime = "crun" },
			wantReason: lpmv1.ReasonIncompatibleRuntime,
		},
		{
			name:       "rseq lost on target rejected",
			target:     func(c *lpmv1.NodeCapabilities) { c.RseqRestore = false },
			wantReason: lpmv1.ReasonRseqUnsupported,
		},
		{
			name:   "rseq gained on target passes",
			source: func(c *lpmv1.NodeCapabilities) { c.RseqRestore = false },
		},
		{
			name:       "target restoring into old cgroup rejected",
			target:     func(c *lpmv1.NodeCapabilities) { c.RestoreIntoNewCgroup = ptr.To(false) },
			wantReason: lpmv1.ReasonCgroupRestoreUnsupported,
		},
		{
			name:   "target not reporting cgroup restore passes",
			target: func(c *lpmv1.NodeCapabilities) { c.RestoreIntoNewCgroup = nil },
		},
		{
			name: "images-dir on source rejected",
			source: func(c *lpmv1.NodeCapabilities) {
				c.CRIUConfig[0].Options = append(c.CRIUConfig[0].Options, "images-dir=/srv")
			},
			wantReason: lpmv1.ReasonCRIUConfigUnsupported,
		},
		{
			name: "tcp-close on both nodes passes",
			source: func(c *lpmv1.NodeCapabilities) {
				c.CRIUConfig[0].Options = append(c.CRIUConfig[0].Options, "tcp-close", "skip-in-flight")
			},
			target: func(c *lpmv1.NodeCapabilities) {
				c.CRIUConfig[0].Options = append(c.CRIUConfig[0].Options, "tcp-close")
			},
		},
		{
			name: "tcp-close on target only passes",
			target: func(c *lpmv1.NodeCapabilities) {
				c.CRIUConfig[0].Options = append(c.CRIUConfig[0].Options, "tcp-close")
			},
		},
		{
			name: "tcp-close on source only rejected",
			source: func(c *lpmv1.NodeCapabilities) {
				c.CRIUConfig[0].Options = append(c.CRIUConfig[0].Options, "tcp-close")
			},
			wantReason: lpmv1.ReasonIncompatibleCRIU,
		},
		{
			name: "nftables lock without target feature rejected",
			source: func(c *lpmv1.NodeCapabilities) {
				c.CRIUConfig[0].Options = append(c.CRIUConfig[0].Options, "network-lock=nftables")
			},
			target:     func(c *lpmv1.NodeCapabilities) { c.CRIUFeatures = []string{"uffd"} },
			wantReason: lpmv1.ReasonIncompatibleCRIU,
		},
		{
			name: "nftables lock with target feature passes",
			source: func(c *lpmv1.NodeCapabilities) {
				c.CRIUConfig[0].Options = append(c.CRIUConfig[0].Options, "network-lock=nftables")
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := CheckCRIUCompatible(criuAgent("node-a", tc.source), criuAgent("node-b", tc.target))

			var got lpmv1.Reason
			if f != nil {
				got = f.Reason
			}
			if diff := cmp.Diff(tc.wantReason, got); diff != "" {
				t.Errorf("reason (-want +got):\n%s", diff)
			}
			if f != nil && f.Message == "" {
				t.Error("failure has no message")
			}
		})
	}
}

func TestCheckCRIUCompatibleWithoutCapabilities(t *testing.T) {
	bare := &lpmv1.NodeAgent{ObjectMeta: metav1.ObjectMeta{Name: "node-b"}}
	if f := CheckCRIUCompatible(criuAgent("node-a", nil), bare); f != nil {
		t.Errorf("CheckCRIUCompatible() = %v, want nil for a node without capabilities", f)
	}
}
