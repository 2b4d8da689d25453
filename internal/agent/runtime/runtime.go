// Package runtime is the agent's view of the node's container runtime: the
// containerd client for what the CRI does not offer (pausing, thawing and
// killing a container's task, streaming blobs into the content store,
// creating and unpacking images) and the runtime's CRI services for what the
// kubelet sees (image status, container status and its restored marker,
// the runtime's configuration and version).
//
// Everything happens in containerd's k8s.io namespace, the one the CRI
// plugin serves.
package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Namespace is containerd's namespace for the CRI plugin.
const Namespace = "k8s.io"

// Runtime talks to one containerd.
type Runtime struct {
	client *containerd.Client
	cri    runtimeapi.RuntimeServiceClient
	images runtimeapi.ImageServiceClient
}

// Connect dials containerd's socket.
func Connect(ctx context.Context, socket string) (*Runtime, error) {
	c, err := containerd.New(socket, containerd.WithDefaultNamespace(Namespace),
		containerd.WithTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("failed to connect to containerd at %q: %w", socket, err)
	}
	conn, ok := c.Conn().(*grpc.ClientConn)
	if !ok {
		_ = c.Close()
		return nil, fmt.Errorf("containerd client at %q has no gRPC connection", socket)
	}
	return &Runtime{
		client: c,
		cri:    runtimeapi.NewRuntimeServiceClient(conn),
		images: runtimeapi.NewImageServiceClient(conn),
	}, nil
}

// Close closes the connection.
func (r *Runtime) Close() error { return r.client.Close() }

// Client returns the containerd client.
func (r *Runtime) Client() *containerd.Client { return r.client }

// CRI returns the runtime's CRI runtime service.
func (r *Runtime) CRI() runtimeapi.RuntimeServiceClient { return r.cri }

// CRIImages returns the runtime's CRI image service.
func (r *Runtime) CRIImages() runtimeapi.ImageServiceClient { return r.images }

// TaskState is the state of a container's task.
type TaskState string

// Task states as containerd reports them.
const (
	TaskRunning TaskState = "running"
	TaskPaused  TaskState = "paused"
	TaskStopped TaskState = "stopped"
	TaskUnknown TaskState = "unknown"
)

// ErrNotFound reports a container or task that does not exist.
var ErrNotFound = errors.New("not found")

// TaskStatus returns the state of a container's task.
func (r *Runtime) TaskStatus(ctx context.Context, containerID string) (TaskState, error) {
	task, err := r.task(ctx, containerID)
	if err != nil {
		return TaskUnknown, err
	}
	status, err := task.Status(ctx)
	if err != nil {
		return TaskUnknown, wrapNotFound(err, "failed to get status of task %s", containerID)
	}
	return TaskState(status.Status), nil
}

// Pause freezes a container's processes. Pausing a paused task succeeds.
func (r *Runtime) Pause(ctx context.Context, containerID string) error {
	task, err := r.task(ctx, containerID)
	if err != nil {
		return err
	}
	if err := task.Pause(ctx); err != nil {
		if state, serr := r.TaskStatus(ctx, containerID); serr == nil && state == TaskPaused {
			return nil
		}
		return wrapNotFound(err, "failed to pause container %s", containerID)
	}
	return nil
}

// Resume thaws a container's processes. Resuming a running task succeeds.
func (r *Runtime) Resume(ctx context.Context, containerID string) error {
	task, err := r.task(ctx, containerID)
	if err != nil {
		return err
	}
	if err := task.Resume(ctx); err != nil {
		if state, serr := r.TaskStatus(ctx, containerID); serr == nil && state != TaskPaused {
			return nil
		}
		return wrapNotFound(err, "failed to resume container %s", containerID)
	}
	return nil
}

// KillFrozen sends SIGKILL to every process of a paused container and
// leaves the container paused. With the cgroup v1 freezer a frozen process
// does not act on the signal: it stays pending, and the process dies as
// soon as it is thawed, before it runs another instruction of its own. So
// the container neither runs nor exits until Resume, and the kubelet finds
// nothing to restart.
//
// The agent sends the signals itself, with kill(2) on the PIDs the runtime
// reports, because runc thaws a paused container when it kills it. It must
// run in the node's PID namespace. The PIDs cannot be reused meanwhile,
// because frozen processes cannot exit. A container that is gone or has
// stopped counts as killed.
//
// NOTE: the cgroup v2 freezer lets a fatal signal through, so there the
// processes die at once and the kubelet may restart the container.
func (r *Runtime) KillFrozen(ctx context.Context, containerID string) error {
	task, err := r.task(ctx, containerID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	state, err := r.TaskStatus(ctx, containerID)
	switch {
	case errors.Is(err, ErrNotFound) || state == TaskStopped:
		return nil
	case err != nil:
		return err
	case state != TaskPaused:
		return fmt.Errorf("failed to kill container %s while it is frozen: its task is %s", containerID, state)
	}
	processes, err := task.Pids(ctx)
	if err != nil {
		return wrapNotFound(err, "failed to list the processes of container %s", containerID)
	}
	for _, p := range processes {
		if err := syscall.Kill(int(p.Pid), syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("failed to kill process %d of container %s: %w", p.Pid, containerID, err)
		}
	}
	return nil
}

func (r *Runtime) task(ctx context.Context, containerID string) (containerd.Task, error) {
	container, err := r.client.LoadContainer(ctx, containerID)
	if err != nil {
		return nil, wrapNotFound(err, "failed to load container %s", containerID)
	}
	task, err := container.Task(ctx, nil)
	if err != nil {
		return nil, wrapNotFound(err, "failed to load task of container %s", containerID)
	}
	return task, nil
}

func wrapNotFound(err error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("%s: %w: %w", msg, ErrNotFound, err)
	}
	return fmt.Errorf("%s: %w", msg, err)
}

// ContainerID strips the runtime prefix ("containerd://") from a pod
// status's container ID.
func ContainerID(statusID string) string {
	if _, id, ok := strings.Cut(statusID, "://"); ok {
		return id
	}
	return statusID
}

// Info is the runtime's identity and the parts of its CRI configuration
// that decide what it can checkpoint and restore.
type Info struct {
	// Name and Version are the runtime's, as CRI Version returns them.
	Name    string
	Version string
	// RestoreViaCreate is containerd's enable_experimental_restore_via_create.
	RestoreViaCreate bool
	// CRIUEnabled is false when the runtime's enable_criu turns CRIU off.
	CRIUEnabled bool
	// DefaultRuntime is the default runtime handler, for example runc.
	DefaultRuntime string
	// RuntimeBinary is the OCI runtime binary of the default handler, when
	// the configuration names one.
	RuntimeBinary string
	// Snapshotter is the default handler's snapshotter, when configured.
	Snapshotter string
	// Pid is containerd's process ID in its PID namespace, and PidNS that
	// namespace's inode number.
	Pid   uint64
	PidNS uint64
}

// criConfig is the part of containerd's CRI configuration (CRI Status with
// verbose set, key "config") that the agent reads.
type criConfig struct {
	EnableExperimentalRestoreViaCreate bool  `json:"enableExperimentalRestoreViaCreate"`
	EnableCRIU                         *bool `json:"enableCRIU"`
	Containerd                         struct {
		DefaultRuntimeName string `json:"defaultRuntimeName"`
		Runtimes           map[string]struct {
			Snapshotter string         `json:"snapshotter"`
			Options     map[string]any `json:"options"`
		} `json:"runtimes"`
	} `json:"containerd"`
}

// Info reads the runtime's version, CRI configuration and process.
func (r *Runtime) Info(ctx context.Context) (*Info, error) {
	version, err := r.cri.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		return nil, fmt.Errorf("failed to get runtime version: %w", err)
	}
	info := &Info{Name: version.GetRuntimeName(), Version: version.GetRuntimeVersion(), CRIUEnabled: true}

	status, err := r.cri.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		return nil, fmt.Errorf("failed to get runtime status: %w", err)
	}
	if raw, ok := status.GetInfo()["config"]; ok {
		var cfg criConfig
		if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
			return nil, fmt.Errorf("failed to parse the runtime's CRI configuration: %w", err)
		}
		info.RestoreViaCreate = cfg.EnableExperimentalRestoreViaCreate
		info.CRIUEnabled = cfg.EnableCRIU == nil || *cfg.EnableCRIU
		info.DefaultRuntime = cfg.Containerd.DefaultRuntimeName
		if handler, ok := cfg.Containerd.Runtimes[info.DefaultRuntime]; ok {
			info.Snapshotter = handler.Snapshotter
			if binary, ok := handler.Options["BinaryName"].(string); ok {
				info.RuntimeBinary = binary
			}
		}
	}

	server, err := r.client.IntrospectionService().Server(ctx)
	if err != nil {
		return nil, fmt.Errorf("failed to get containerd's server info: %w", err)
	}
	info.Pid, info.PidNS = server.GetPid(), server.GetPidns()
	return info, nil
}

// ServerPID returns containerd's process ID, which changes when containerd
// restarts. The call fails while containerd does not answer.
func (r *Runtime) ServerPID(ctx context.Context) (uint64, error) {
	server, err := r.client.IntrospectionService().Server(ctx)
	if err != nil {
		return 0, fmt.Errorf("failed to get containerd's server info: %w", err)
	}
	return server.GetPid(), nil
}

// TaskPID returns the host PID of a container's init process.
func (r *Runtime) TaskPID(ctx context.Context, containerID string) (uint32, error) {
	task, err := r.task(ctx, containerID)
	if err != nil {
		return 0, err
	}
	return task.Pid(), nil
}
