package node

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

var (
	componentMu    sync.Mutex
	componentPaths = map[string]string{}
)

// DefaultCacheDir returns $LPM_CACHE, or ~/.cache/lpm.
func DefaultCacheDir() string {
	if dir := os.Getenv("LPM_CACHE"); dir != "" {
		return dir
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/root"
	}
	return filepath.Join(home, ".cache", "lpm")
}

// ComponentPath returns the directory of a component built by
// hack/components.sh (its bin directory, or the root of node-root), and an
// error when the component is not built. The script is found by walking up
// from the working directory, or at $LPM_COMPONENTS.
func ComponentPath(component string) (string, error) {
	componentMu.Lock()
	defer componentMu.Unlock()
	if p, ok := componentPaths[component]; ok {
		return p, nil
	}
	script, err := componentsScript()
	if err != nil {
		return "", err
	}
	out, err := exec.Command(script, "path", component).Output()
	if err != nil {
		return "", fmt.Errorf("failed to run %s path %s: %w", script, component, err)
	}
	dir := strings.TrimSpace(string(out))
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("component %s is not built (no %s): run hack/components.sh %s", component, dir, component)
	}
	componentPaths[component] = dir
	return dir, nil
}

func componentsScript() (string, error) {
	if s := os.Getenv("LPM_COMPONENTS"); s != "" {
		return s, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		s := filepath.Join(dir, "hack", "components.sh")
		if _, err := os.Stat(s); err == nil {
			return s, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("hack/components.sh not found above the working directory; set LPM_COMPONENTS")
		}
		dir = parent
	}
}
