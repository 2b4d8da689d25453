package restorecheck

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// lockListers are the commands that list netfilter state, with the parser
// of each output. Both iptables back ends are asked, because CRIU calls
// whichever iptables-restore the node has. The legacy back end names the
// filter table, where CRIU adds its chain, because without /proc (in the
// runtime's root) it would find no table loaded.
var lockListers = []struct {
	args  []string
	parse func(string) []string
}{
	{[]string{"iptables-legacy-save", "-t", "filter"}, IPTablesChains},
	{[]string{"ip6tables-legacy-save", "-t", "filter"}, IPTablesChains},
	{[]string{"iptables-nft-save"}, IPTablesChains},
	{[]string{"ip6tables-nft-save"}, IPTablesChains},
	{[]string{"iptables-save"}, IPTablesChains},
	{[]string{"nft", "list", "tables"}, NftablesTables},
}

// Tools runs the node's netfilter programs: those of the filesystem at
// Root (the container runtime's root, as /proc/<pid>/root shows it) with
// its PATH.
type Tools struct {
	Root string
	// Path is the PATH to search, without "PATH=".
	Path string
}

// NetworkLocks returns the CRIU chains and tables in the network namespace
// at netnsPath (for example /proc/<pid>/ns/net), deduplicated. It fails
// only when no lister could run at all.
func (t Tools) NetworkLocks(ctx context.Context, netnsPath string) ([]string, error) {
	ns, err := os.Open(netnsPath)
	if err != nil {
		return nil, fmt.Errorf("failed to open network namespace %s: %w", netnsPath, err)
	}
	defer func() { _ = ns.Close() }()

	seen := map[string]bool{}
	var locks []string
	var errs []error
	ran := 0
	for _, l := range lockListers {
		path, err := t.lookPath(l.args[0])
		if err != nil {
			continue
		}
		out, err := runInNetns(ctx, int(ns.Fd()), t.Root, t.Path, path, l.args[1:]...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ran++
		for _, lock := range l.parse(out) {
			if !seen[lock] {
				seen[lock] = true
				locks = append(locks, lock)
			}
		}
	}
	if ran == 0 {
		return nil, fmt.Errorf("no netfilter listing ran in %s: %w", netnsPath,
			errors.Join(append(errs, errors.New("none of iptables-save and nft found"))...))
	}
	return locks, nil
}

func (t Tools) lookPath(name string) (string, error) {
	for _, dir := range strings.Split(t.Path, ":") {
		if !strings.HasPrefix(dir, "/") {
			continue
		}
		candidate := filepath.Join(dir, name)
		info, err := os.Stat(filepath.Join(t.Root, candidate))
		if err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0 {
			return candidate, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// runInNetns runs a program in the network namespace nsFD from a thread
// that joined it; the child inherits the thread's namespace. The thread is
// never unlocked, so the Go runtime ends it instead of reusing it.
func runInNetns(ctx context.Context, nsFD int, root, pathEnv, name string, args ...string) (string, error) {
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		goruntime.LockOSThread()
		if err := unix.Setns(nsFD, unix.CLONE_NEWNET); err != nil {
			done <- result{err: fmt.Errorf("failed to enter the network namespace: %w", err)}
			return
		}
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Env = []string{"PATH=" + pathEnv}
		cmd.Dir = "/"
		if root != "" && root != "/" {
			cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			err = fmt.Errorf("%s %s failed: %w: %s", name, strings.Join(args, " "), err,
				strings.TrimSpace(string(out)))
		}
		done <- result{out: string(out), err: err}
	}()
	r := <-done
	return r.out, r.err
}
