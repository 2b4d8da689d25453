package preflight

import (
	"slices"
	"strconv"
	"strings"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/criuconfig"
)

// nftablesFeature is the CRIU feature that a network lock with nftables
// needs on the restoring node.
const nftablesFeature = "network_lock_nftables"

// CheckCRIUCompatible rejects a source and target whose CRIU, OCI runtime,
// kernel or CRIU configuration make the restore fail, as each agent
// publishes them. A node that publishes no capabilities is not judged here:
// CheckAgent already requires that it can checkpoint or restore.
func CheckCRIUCompatible(source, target *lpmv1.NodeAgent) *Failure {
	if source == nil || target == nil || source.Status.Capabilities == nil || target.Status.Capabilities == nil {
		return nil
	}
	src, dst := source.Status.Capabilities, target.Status.Capabilities
	checks := []func(string, string, *lpmv1.NodeCapabilities, *lpmv1.NodeCapabilities) *Failure{
		checkConfigs, checkOCIRuntime, checkCRIUVersion, checkNetworkLock, checkTCPClose, checkRseq,
		checkCgroupRestore,
	}
	for _, check := range checks {
		if f := check(source.Name, target.Name, src, dst); f != nil {
			return f
		}
	}
	return nil
}

// checkConfigs rejects CRIU configuration options that move the images
// on either node.
func checkConfigs(srcName, dstName string, src, dst *lpmv1.NodeCapabilities) *Failure {
	for _, n := range []struct {
		name string
		caps *lpmv1.NodeCapabilities
	}{{srcName, src}, {dstName, dst}} {
		if problem := criuconfig.Problem(n.caps.CRIUConfig); problem != "" {
			return fail(lpmv1.ReasonCRIUConfigUnsupported, "spec.targetNode", "on node %s, %s. Remove the "+
				"option from that file", n.name, problem)
		}
	}
	return nil
}

// checkOCIRuntime rejects nodes with different OCI runtimes: runc and crun
// lay out and restore checkpoints differently.
func checkOCIRuntime(srcName, dstName string, src, dst *lpmv1.NodeCapabilities) *Failure {
	if src.OCIRuntime == "" || dst.OCIRuntime == "" || src.OCIRuntime == dst.OCIRuntime {
		return nil
	}
	return fail(lpmv1.ReasonIncompatibleRuntime, "spec.targetNode",
		"node %s runs containers with %s and node %s with %s", srcName, src.OCIRuntime, dstName, dst.OCIRuntime)
}

// checkCRIUVersion rejects a target whose CRIU is older than the source's:
// an older CRIU may not read the images of a newer one.
func checkCRIUVersion(srcName, dstName string, src, dst *lpmv1.NodeCapabilities) *Failure {
	s, d := versionNumber(src.CRIUVersion), versionNumber(dst.CRIUVersion)
	if s == 0 || d == 0 || d >= s {
		return nil
	}
	return fail(lpmv1.ReasonIncompatibleCRIU, "spec.targetNode",
		"node %s has CRIU %s, older than CRIU %s of node %s, which may write images it cannot read",
		dstName, dst.CRIUVersion, src.CRIUVersion, srcName)
}

// checkNetworkLock rejects a target that cannot take the network lock
// with nftables when the source's configuration locks with it: the
// restore must remove the lock the dump recorded.
func checkNetworkLock(srcName, dstName string, src, dst *lpmv1.NodeCapabilities) *Failure {
	mode, set := criuconfig.Option(src.CRIUConfig, "network-lock")
	if !set || mode != "nftables" || slices.Contains(dst.CRIUFeatures, nftablesFeature) {
		return nil
	}
	return fail(lpmv1.ReasonIncompatibleCRIU, "spec.targetNode",
		"node %s locks the network with nftables (network-lock in its CRIU configuration), and CRIU on node "+
			"%s lacks the %s feature", srcName, dstName, nftablesFeature)
}

// checkTCPClose rejects a target whose CRIU configuration lacks tcp-close
// when the source's sets it: CRIU records tcp-close in the checkpoint and
// refuses to restore it without ("Need to set the --tcp-close options").
func checkTCPClose(srcName, dstName string, src, dst *lpmv1.NodeCapabilities) *Failure {
	if !criuconfig.ClosesTCP(src.CRIUConfig) || criuconfig.ClosesTCP(dst.CRIUConfig) {
		return nil
	}
	return fail(lpmv1.ReasonIncompatibleCRIU, "spec.targetNode",
		"node %s checkpoints with tcp-close in its CRIU configuration, and CRIU on node %s restores such a "+
			"checkpoint only with tcp-close set too. Set tcp-close in /etc/criu/runc.conf on node %s, or pick "+
			"another target", srcName, dstName, dstName)
}

// checkRseq rejects a target that cannot restore rseq when the source can
// dump it: on such a source, processes with glibc 2.35 or later run with
// rseq registered.
func checkRseq(srcName, dstName string, src, dst *lpmv1.NodeCapabilities) *Failure {
	if !src.RseqRestore || dst.RseqRestore {
		return nil
	}
	return fail(lpmv1.ReasonRseqUnsupported, "spec.targetNode",
		"CRIU on node %s dumps processes with rseq registered, and node %s cannot restore them (it needs "+
			"Linux 5.13 and CRIU 3.17). Pick another target, or set GLIBC_TUNABLES=glibc.pthread.rseq=0 in the "+
			"pod", srcName, dstName)
}

// checkCgroupRestore rejects a target whose runtime restores into the
// cgroup recorded at checkpoint: the kubelet would not account for the
// processes, and removing the source's cgroup could kill them.
func checkCgroupRestore(_, dstName string, _, dst *lpmv1.NodeCapabilities) *Failure {
	if dst.RestoreIntoNewCgroup == nil || *dst.RestoreIntoNewCgroup {
		return nil
	}
	runtime := strings.TrimSpace(dst.OCIRuntime + " " + dst.OCIRuntimeVersion)
	if runtime == "" {
		runtime = "unknown"
	}
	return fail(lpmv1.ReasonCgroupRestoreUnsupported, "spec.targetNode",
		"the OCI runtime of node %s (%s) or its CRIU configuration (manage-cgroups, cgroup-root) restores "+
			"processes into the cgroup recorded at checkpoint, not the new pod's", dstName, runtime)
}

// versionNumber turns 4.2.1 into 40201, CRIU's numbering; 0 when unreadable.
func versionNumber(v string) int {
	parts := strings.SplitN(v, ".", 3)
	n := 0
	for i, mult := range []int{10000, 100, 1} {
		if i >= len(parts) {
			break
		}
		x, err := strconv.Atoi(parts[i])
		if err != nil {
			return 0
		}
		n += x * mult
	}
	return n
}
