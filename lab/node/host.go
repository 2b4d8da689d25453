package node

import (
	"os"
	"testing"
)

// RequireRoot skips the test unless it runs as root, which creating
// namespaces, mounts and cgroups requires.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("lab nodes need root")
	}
}
