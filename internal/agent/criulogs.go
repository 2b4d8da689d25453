package agent

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	metadata "github.com/checkpoint-restore/checkpointctl/lib"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/agent/capabilities"
	"github.com/lpm-dev/lpm/internal/agent/restorecheck"
	"github.com/lpm-dev/lpm/internal/criuconfig"
)

// Defaults of the CRIU log retention: the garbage collector removes the
// log directories of migrations that ended when they are older than
// DefaultLogMaxAge or beyond the DefaultLogMaxCount newest. The agent keeps
// these copies because runtimes delete their logs with the failed container.
const (
	DefaultLogMaxAge   = 24 * time.Hour
	DefaultLogMaxCount = 20
)

// maxLogBytes bounds one kept CRIU log.
const maxLogBytes = 32 << 20

// logDir is the directory that keeps a migration's CRIU logs on this node.
func (a *Agent) logDir(uid string) string {
	return filepath.Join(a.store.Dir(), "logs", uid)
}

// keepArchiveLog copies CRIU's dump log out of a checkpoint archive into
// the migration's log directory and returns the directory.
func (a *Agent) keepArchiveLog(uid, container, archivePath string) (string, error) {
	f, err := os.Open(archivePath)
	if err != nil {
		return "", fmt.Errorf("failed to open checkpoint archive: %w", err)
	}
	defer func() { _ = f.Close() }()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return "", fmt.Errorf("checkpoint archive %s has no %s", archivePath, metadata.DumpLogFile)
		}
		if err != nil {
			return "", fmt.Errorf("failed to read checkpoint archive %s: %w", archivePath, err)
		}
		if filepath.Clean(hdr.Name) == metadata.DumpLogFile && hdr.Typeflag == tar.TypeReg {
			return a.writeLog(uid, container+"-"+metadata.DumpLogFile, tr)
		}
	}
}

// keepRuntimeLog copies the CRIU log that a runtime's error names, read
// through the runtime's root, and returns the kept file's directory and the
// log's error lines. It returns nothing when the error names no log or the
// runtime already deleted it.
func (a *Agent) keepRuntimeLog(ctx context.Context, uid, container, kind, runtimeErr string) (string, []string) {
	log := logf.FromContext(ctx)
	info, err := a.runtime.Info(ctx)
	if err != nil {
		log.Error(err, "Failed to find the runtime's root for its CRIU log")
		return "", nil
	}
	// containerd 2.3 deletes the log the runtime names together with the
	// failed container, usually before the agent can copy it. A log-file
	// option in the node's CRIU configuration, read now rather than from the
	// last published capabilities, moves the log where it stays.
	candidates := []string{restorecheck.LogFileFromError(runtimeErr)}
	root := filepath.Join(a.opts.ProcRoot, strconv.FormatUint(info.Pid, 10), "root")
	for _, config := range capabilities.CRIUConfigPaths {
		data, err := os.ReadFile(filepath.Join(root, config))
		if err != nil {
			continue
		}
		files := []lpmv1.CRIUConfigFile{{Path: config, Options: criuconfig.Parse(string(data))}}
		if path, set := criuconfig.Option(files, "log-file"); set && strings.HasPrefix(path, "/") {
			candidates = append(candidates, path)
		}
	}
	var f *os.File
	for _, nodePath := range candidates {
		if nodePath == "" {
			continue
		}
		local := filepath.Join(root, filepath.Clean(nodePath))
		if f, err = os.Open(local); err == nil {
			break
		}
		log.Info("The runtime's CRIU log is gone", "path", nodePath, "error", err.Error())
	}
	if f == nil {
		return "", nil
	}
	defer func() { _ = f.Close() }()
	dir, err := a.writeLog(uid, container+"-"+kind+".log", f)
	if err != nil {
		log.Error(err, "Failed to keep the runtime's CRIU log", "path", f.Name())
		return "", nil
	}
	kept, err := os.Open(filepath.Join(dir, container+"-"+kind+".log"))
	if err != nil {
		return dir, nil
	}
	defer func() { _ = kept.Close() }()
	return dir, restorecheck.ErrorLines(kept)
}

// writeLog writes at most maxLogBytes of r to name in the migration's log
// directory, readable by root only, and removes logs past their retention.
func (a *Agent) writeLog(uid, name string, r io.Reader) (string, error) {
	dir := a.logDir(uid)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("failed to create log directory: %w", err)
	}
	out, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return "", fmt.Errorf("failed to create CRIU log copy: %w", err)
	}
	_, err = io.Copy(out, io.LimitReader(r, maxLogBytes))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("failed to copy CRIU log %s: %w", name, err)
	}
	return dir, nil
}

// logDirectory is a migration's CRIU log directory and when a log was last
// written to it.
type logDirectory struct {
	uid      string
	modified time.Time
}

// collectLogs removes the CRIU log directories of migrations that ended,
// whether they failed, were cancelled or vanished: those last written
// before maxAge ago, and those beyond the maxCount most recently written.
// The logs of a migration the agent still works on (a record that is not
// finished, listed in live) stay, and count towards neither limit.
func (a *Agent) collectLogs(ctx context.Context, live map[string]bool) error {
	root := filepath.Join(a.store.Dir(), "logs")
	entries, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to list CRIU log directories: %w", err)
	}
	var ended []logDirectory
	for _, e := range entries {
		if !e.IsDir() || live[e.Name()] {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		ended = append(ended, logDirectory{uid: e.Name(), modified: info.ModTime()})
	}

	var errs []error
	cutoff := a.clock.Now().Add(-a.opts.LogMaxAge)
	for i, dir := range expiredLogs(ended, cutoff, a.opts.LogMaxCount) {
		path := filepath.Join(root, dir.uid)
		if err := os.RemoveAll(path); err != nil {
			errs = append(errs, fmt.Errorf("failed to remove CRIU logs %s: %w", path, err))
			continue
		}
		logf.FromContext(ctx).V(2).Info("Removed CRIU logs of a migration that ended", "uid", dir.uid,
			"lastWritten", dir.modified, "index", i)
	}
	return errors.Join(errs...)
}

// expiredLogs returns the directories written before cutoff and those
// beyond the maxCount most recently written. It sorts dirs.
func expiredLogs(dirs []logDirectory, cutoff time.Time, maxCount int) []logDirectory {
	sort.Slice(dirs, func(i, j int) bool {
		if !dirs[i].modified.Equal(dirs[j].modified) {
			return dirs[i].modified.After(dirs[j].modified)
		}
		return dirs[i].uid < dirs[j].uid
	})
	var expired []logDirectory
	for i, dir := range dirs {
		if i >= maxCount || dir.modified.Before(cutoff) {
			expired = append(expired, dir)
		}
	}
	return expired
}

// withCRIUErrors appends CRIU's error lines and the kept log's location to
// a failure.
func withCRIUErrors(err error, node, dir string, lines []string) error {
	if dir == "" {
		return err
	}
	if len(lines) == 0 {
		return fmt.Errorf("%w; CRIU log kept on node %s in %s", err, node, dir)
	}
	return fmt.Errorf("%w; CRIU log kept on node %s in %s; CRIU errors: %s", err, node, dir,
		strings.Join(lines, " | "))
}

// removeLogs deletes a migration's CRIU logs once it has succeeded: only the
// logs of migrations that failed or were cancelled are kept, under the
// retention rule of collectLogs.
func (a *Agent) removeLogs(ctx context.Context, uid string) {
	if err := os.RemoveAll(a.logDir(uid)); err != nil {
		logf.FromContext(ctx).Error(err, "Failed to remove CRIU logs", "path", a.logDir(uid))
	}
}
