package benchlab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
	"unsafe"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/typeurl/v2"
	"golang.org/x/sys/unix"

	"github.com/lpm-dev/lpm/internal/agent/runtime"
	"github.com/lpm-dev/lpm/lab/node"
)

// Mark is one timestamped observation on a node: a containerd event, or a
// file that appeared, was closed after writing, was moved in or was removed.
type Mark struct {
	Time time.Time `json:"time"`
	Node string    `json:"node"`
	// Kind is the containerd topic (for example /tasks/paused) or a file
	// event on a watched directory: "create:<label>", "close:<label>",
	// "moved:<label>" or "delete:<label>".
	Kind string `json:"kind"`
	// Subject is the container ID, image name or snapshot key of an
	// event, or the file name of a file event.
	Subject string `json:"subject"`
	// Size is the size of content that a /content/create event names.
	Size int64 `json:"size,omitempty"`
}

// Watch is a directory inside a node whose entries the tracer watches.
type Watch struct {
	Node *node.Node
	// Path is the directory inside the node.
	Path string
	// Label names the directory in the marks.
	Label string
	// Children also watches each directory created directly in Path, with
	// the label Label+"/".
	Children bool
}

// Tracer records containerd events of several nodes and file events of
// watched directories, with the host's clock. The nodes share the host's
// kernel and so its clock: marks of two nodes compare without skew.
type Tracer struct {
	mu    sync.Mutex
	marks []Mark

	cancel context.CancelFunc
	wg     sync.WaitGroup
	files  []*os.File
}

// StartTracer subscribes to the containerd events of nodes and watches
// the directories of watches until Stop.
func StartTracer(ctx context.Context, nodes []*node.Node, watches []Watch) (*Tracer, error) {
	ctx, cancel := context.WithCancel(ctx)
	t := &Tracer{cancel: cancel}
	for _, n := range nodes {
		if err := t.subscribe(ctx, n); err != nil {
			t.Stop()
			return nil, err
		}
	}
	byNode := map[*node.Node][]Watch{}
	for _, w := range watches {
		byNode[w.Node] = append(byNode[w.Node], w)
	}
	for n, ws := range byNode {
		if err := t.watch(n, ws); err != nil {
			t.Stop()
			return nil, err
		}
	}
	return t, nil
}

func (t *Tracer) add(m Mark) {
	t.mu.Lock()
	t.marks = append(t.marks, m)
	t.mu.Unlock()
}

// Marks returns the marks recorded so far, in time order.
func (t *Tracer) Marks() []Mark {
	t.mu.Lock()
	out := append([]Mark(nil), t.marks...)
	t.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

// Reset drops the marks recorded so far.
func (t *Tracer) Reset() {
	t.mu.Lock()
	t.marks = nil
	t.mu.Unlock()
}

// Stop ends the subscriptions and watches and waits for their goroutines.
func (t *Tracer) Stop() {
	t.cancel()
	for _, f := range t.files {
		_ = f.Close()
	}
	t.wg.Wait()
}

func (t *Tracer) subscribe(ctx context.Context, n *node.Node) error {
	rt, err := runtime.Connect(ctx, n.ContainerdSocket())
	if err != nil {
		return err
	}
	events, errs := rt.Client().Subscribe(ctx, `namespace=="k8s.io"`)
	name := n.Name()
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer func() { _ = rt.Close() }()
		for {
			select {
			case <-ctx.Done():
				return
			case err := <-errs:
				if err != nil && ctx.Err() == nil {
					fmt.Fprintf(os.Stderr, "containerd events of %s stopped: %v\n", name, err)
				}
				return
			case env := <-events:
				if env == nil {
					continue
				}
				m := Mark{Time: env.Timestamp, Node: name, Kind: env.Topic}
				if ev, err := typeurl.UnmarshalAny(env.Event); err == nil {
					m.Subject, m.Size = eventSubject(ev)
				}
				t.add(m)
			}
		}
	}()
	return nil
}

// eventSubject returns the ID or name an event is about.
func eventSubject(ev any) (string, int64) {
	switch e := ev.(type) {
	case *apievents.TaskCreate:
		return e.ContainerID, 0
	case *apievents.TaskStart:
		return e.ContainerID, 0
	case *apievents.TaskPaused:
		return e.ContainerID, 0
	case *apievents.TaskResumed:
		return e.ContainerID, 0
	case *apievents.TaskCheckpointed:
		return e.ContainerID, 0
	case *apievents.TaskExit:
		return e.ContainerID, 0
	case *apievents.TaskDelete:
		return e.ContainerID, 0
	case *apievents.ContainerCreate:
		return e.ID, 0
	case *apievents.ContainerDelete:
		return e.ID, 0
	case *apievents.ImageCreate:
		return e.Name, 0
	case *apievents.ImageUpdate:
		return e.Name, 0
	case *apievents.ImageDelete:
		return e.Name, 0
	case *apievents.ContentCreate:
		return e.Digest, e.Size
	case *apievents.ContentDelete:
		return e.Digest, 0
	case *apievents.SnapshotPrepare:
		return e.Key, 0
	case *apievents.SnapshotCommit:
		return e.Name, 0
	case *apievents.SnapshotRemove:
		return e.Key, 0
	}
	return "", 0
}

const watchMask = unix.IN_CREATE | unix.IN_CLOSE_WRITE | unix.IN_MOVED_TO | unix.IN_DELETE

// watch starts one inotify instance for the watches of one node.
func (t *Tracer) watch(n *node.Node, watches []Watch) error {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("failed to start inotify: %w", err)
	}
	f := os.NewFile(uintptr(fd), "inotify")
	t.files = append(t.files, f)
	type watched struct {
		path     string
		label    string
		children bool
	}
	var mu sync.Mutex
	byWD := map[int32]watched{}
	addWatch := func(w watched) error {
		wd, err := unix.InotifyAddWatch(fd, w.path, watchMask)
		if err != nil {
			return fmt.Errorf("failed to watch %s: %w", w.path, err)
		}
		mu.Lock()
		byWD[int32(wd)] = w
		mu.Unlock()
		return nil
	}
	for _, w := range watches {
		host := n.HostPath(w.Path)
		if err := os.MkdirAll(host, 0o755); err != nil {
			return err
		}
		if err := addWatch(watched{path: host, label: w.Label, children: w.Children}); err != nil {
			return err
		}
	}

	name := n.Name()
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		buf := make([]byte, 64<<10)
		for {
			nr, err := f.Read(buf)
			now := time.Now()
			if err != nil {
				if !errors.Is(err, os.ErrClosed) {
					fmt.Fprintf(os.Stderr, "inotify of %s stopped: %v\n", name, err)
				}
				return
			}
			for off := 0; off+unix.SizeofInotifyEvent <= nr; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				nameBytes := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
				file := strings.TrimRight(string(nameBytes), "\x00")
				off += unix.SizeofInotifyEvent + int(ev.Len)
				mu.Lock()
				w, ok := byWD[ev.Wd]
				mu.Unlock()
				if !ok {
					continue
				}
				var kind string
				switch {
				case ev.Mask&unix.IN_CREATE != 0:
					kind = "create"
				case ev.Mask&unix.IN_CLOSE_WRITE != 0:
					kind = "close"
				case ev.Mask&unix.IN_MOVED_TO != 0:
					kind = "moved"
				case ev.Mask&unix.IN_DELETE != 0:
					kind = "delete"
				default:
					continue
				}
				t.add(Mark{Time: now, Node: name, Kind: kind + ":" + w.label, Subject: file})
				// A child directory created before its watch was added loses
				// its first entries; the directories watched here get their
				// entries well after they appear.
				if kind == "create" && ev.Mask&unix.IN_ISDIR != 0 && w.children {
					_ = addWatch(watched{path: filepath.Join(w.path, file), label: w.label + "/"})
				}
			}
		}
	}()
	return nil
}
