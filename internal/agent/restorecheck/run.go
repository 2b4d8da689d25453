package restorecheck

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// lockListers are the commands that list netfilter state, with the parser
// of each output. Both iptables back ends are asked, because CRIU calls
// whichever iptables-restore the node has. The legacy back end is asked
// for the filter table, where CRIU adds its chain, by name.
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
// at netnsPath (for example /proc/<pid>/ns/net in the agent's view),
// deduplicated. Each lister runs as a child of the node's nsenter in the
// runtime's root, which joins the namespace through the descriptor the
// agent passes it. The agent's own threads never change namespace. It
// returns an error only when no lister could run at all.
func (t Tools) NetworkLocks(ctx context.Context, netnsPath string) ([]string, error) {
	ns, err := os.Open(netnsPath)
	if err != nil {
		return nil, fmt.Errorf("failed to open network namespace %s: %w", netnsPath, err)
	}
	defer func() { _ = ns.Close() }()
	nsenter, err := t.lookPath("nsenter")
	if err != nil {
		return nil, fmt.Errorf("the node has no nsenter to enter network namespace %s: %w", netnsPath, err)
	}

	seen := map[string]bool{}
	var locks []string
	var errs []error
	ran := 0
	for _, l := range lockListers {
		path, err := t.lookPath(l.args[0])
		if err != nil {
			continue
		}
		args := append([]string{"--net=/proc/self/fd/3", "--", path}, l.args[1:]...)
		out, err := t.run(ctx, ns, nsenter, args...)
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

// run executes a program of the runtime's root, chrooted into it, with the
// network namespace as descriptor 3.
func (t Tools) run(ctx context.Context, netns *os.File, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = []string{"PATH=" + t.Path}
	cmd.Dir = "/"
	cmd.ExtraFiles = []*os.File{netns}
	if t.Root != "" && t.Root != "/" {
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: t.Root}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s failed: %w: %s", name, strings.Join(args, " "), err,
			strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
