//go:build e2e

package e2e

import (
	"os"
	"testing"
)

// knownGaps lists the scenarios that fail today because of a known defect
// in lpm or in the software below it, each with the defect. Such a
// scenario is skipped with its reason, so the suite's result shows the gap
// instead of hiding it, unless LPM_E2E_STRICT=1 runs it anyway. Remove an
// entry once the defect is fixed.
var knownGaps = map[string]string{
	"memory limit view": "on cgroup v1 the restored process stays in its limited memory cgroup, but " +
		"its /sys/fs/cgroup/memory mount shows the cgroup runc ran in at the restore: runc takes the " +
		"source of a container's cgroup v1 bind mounts from its own /proc/self/cgroup " +
		"(libcontainer's getCgroupMounts), which at a restore is not the container's",
}

// skipKnownGap skips the test when it is a known gap and LPM_E2E_STRICT is
// not set.
func skipKnownGap(t *testing.T) {
	t.Helper()
	if reason, ok := knownGaps[t.Name()]; ok && os.Getenv("LPM_E2E_STRICT") == "" {
		t.Skipf("known gap: %s (LPM_E2E_STRICT=1 runs it)", reason)
	}
}

// knownGap reports whether a named check is a known gap to log rather than
// fail on.
func knownGap(t *testing.T, check string) bool {
	t.Helper()
	reason, ok := knownGaps[check]
	if ok && os.Getenv("LPM_E2E_STRICT") == "" {
		t.Logf("known gap (%s): %s", check, reason)
		return true
	}
	return false
}
