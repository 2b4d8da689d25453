package agent

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/lpm-dev/lpm/internal/agent/archive"
)

// followPoll is how often the follower looks for the archive and for more
// of it while the runtime writes it.
const followPoll = 5 * time.Millisecond

// archiveFollower inspects the archive that the runtime writes during the
// kubelet's checkpoint call while the call runs. The hashing and validating
// pass of the image build then overlaps the runtime's writing, so after the
// call only the last part of the archive is left to read.
//
// The kubelet names the archive checkpoint-<pod>_<namespace>-<container>-
// <time>.tar in its checkpoint directory and returns the name when the call
// ends. The follower takes the first file of that pattern that was not
// there before the call. Its result counts only if the kubelet returns that
// same file. Otherwise the archive is inspected after the call.
type archiveFollower struct {
	// returned is closed when the checkpoint call has returned, which
	// means the archive is complete.
	returned chan struct{}
	cancel   context.CancelFunc
	result   chan followResult
}

type followResult struct {
	path string
	info *archive.Info
	err  error
}

// followArchive starts following the archive of a container's checkpoint
// in dir, the agent's view of the kubelet's checkpoint directory.
func followArchive(ctx context.Context, dir, pod, namespace, container string) *archiveFollower {
	ctx, cancel := context.WithCancel(ctx)
	f := &archiveFollower{returned: make(chan struct{}), cancel: cancel, result: make(chan followResult, 1)}
	prefix := "checkpoint-" + pod + "_" + namespace + "-" + container + "-"
	before := map[string]bool{}
	if entries, err := os.ReadDir(dir); err == nil {
		for _, e := range entries {
			before[e.Name()] = true
		}
	}
	go func() {
		path, info, err := f.follow(ctx, dir, prefix, before)
		f.result <- followResult{path: path, info: info, err: err}
	}()
	return f
}

func (f *archiveFollower) follow(ctx context.Context, dir, prefix string, before map[string]bool) (
	string, *archive.Info, error) {
	var file *os.File
	for file == nil {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return "", nil, err
		}
		for _, e := range entries {
			name := e.Name()
			if before[name] || !strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, ".tar") {
				continue
			}
			// Only a regular file the runtime created counts, never a link.
			file, err = os.OpenFile(filepath.Join(dir, name), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
			if err != nil {
				return "", nil, err
			}
			if st, err := file.Stat(); err != nil || !st.Mode().IsRegular() {
				_ = file.Close()
				return "", nil, errors.New("the archive is not a regular file")
			}
			break
		}
		if file != nil {
			break
		}
		select {
		case <-ctx.Done():
			return "", nil, ctx.Err()
		case <-f.returned:
			return "", nil, errors.New("the checkpoint call returned before its archive appeared")
		case <-time.After(followPoll):
		}
	}
	defer func() { _ = file.Close() }()
	info, err := archive.Inspect(&growingFile{ctx: ctx, f: file, complete: f.returned}, archive.Limits{})
	return file.Name(), info, err
}

// finish ends the follower after the checkpoint call returned the archive
// at path. It returns the inspection when it succeeded on that same file,
// and false when the caller must inspect the archive itself.
func (f *archiveFollower) finish(path string) (*archive.Info, bool) {
	close(f.returned)
	res := <-f.result
	f.cancel()
	if res.err != nil || res.info == nil || filepath.Clean(res.path) != filepath.Clean(path) {
		return nil, false
	}
	return res.info, true
}

// stop ends the follower of a checkpoint call that failed.
func (f *archiveFollower) stop() {
	f.cancel()
	<-f.result
}

// growingFile reads a file that another process is still writing. At the
// file's current end it waits for more data, and it returns io.EOF only
// after complete is closed.
type growingFile struct {
	ctx      context.Context
	f        *os.File
	complete <-chan struct{}
}

func (g *growingFile) Read(p []byte) (int, error) {
	for {
		n, err := g.f.Read(p)
		if n > 0 || !errors.Is(err, io.EOF) {
			return n, err
		}
		select {
		case <-g.complete:
			return g.f.Read(p)
		case <-g.ctx.Done():
			return 0, g.ctx.Err()
		case <-time.After(followPoll):
		}
	}
}
