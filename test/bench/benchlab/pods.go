package benchlab

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// PodTimes are the moments the pod watcher first saw a pod in each state,
// by the host's clock.
type PodTimes struct {
	Added   time.Time
	Running time.Time
	Ready   time.Time
	// ContainerID is the runtime ID of the pod's first container, without
	// the runtime prefix.
	ContainerID string
	UID         string
}

// PodWatcher records when the pods of the benchmarks' namespace appear,
// run and become Ready, as the API server reports them.
type PodWatcher struct {
	mu     sync.Mutex
	times  map[string]*PodTimes
	cancel context.CancelFunc
	done   chan struct{}
}

// WatchPods starts a watch on the benchmarks' namespace.
func (l *Lab) WatchPods(ctx context.Context) (*PodWatcher, error) {
	ctx, cancel := context.WithCancel(ctx)
	w, err := l.Clients.Kube.CoreV1().Pods(Namespace).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("failed to watch pods: %w", err)
	}
	pw := &PodWatcher{times: map[string]*PodTimes{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(pw.done)
		defer w.Stop()
		for ev := range w.ResultChan() {
			now := time.Now()
			if ev.Type == watch.Error {
				if ctx.Err() == nil {
					fmt.Fprintf(os.Stderr, "pod watch error: %v\n", ev.Object)
				}
				continue
			}
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			pw.observe(pod, now)
		}
	}()
	return pw, nil
}

func (pw *PodWatcher) observe(pod *corev1.Pod, now time.Time) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	t := pw.times[pod.Name]
	if t == nil || t.UID != string(pod.UID) {
		t = &PodTimes{Added: now, UID: string(pod.UID)}
		pw.times[pod.Name] = t
	}
	for _, s := range pod.Status.ContainerStatuses {
		if s.ContainerID != "" {
			t.ContainerID = trimRuntime(s.ContainerID)
		}
		if s.State.Running != nil && t.Running.IsZero() {
			t.Running = now
		}
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && t.Ready.IsZero() {
			t.Ready = now
		}
	}
}

// Times returns what the watcher saw of pod name.
func (pw *PodWatcher) Times(name string) PodTimes {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if t := pw.times[name]; t != nil {
		return *t
	}
	return PodTimes{}
}

// WaitReady waits until the watcher saw pod name Ready.
func (pw *PodWatcher) WaitReady(ctx context.Context, name string, timeout time.Duration) (PodTimes, error) {
	deadline := time.Now().Add(timeout)
	for {
		t := pw.Times(name)
		if !t.Ready.IsZero() {
			return t, nil
		}
		if time.Now().After(deadline) {
			return t, fmt.Errorf("pod %s not Ready after %s", name, timeout)
		}
		select {
		case <-ctx.Done():
			return t, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop ends the watch.
func (pw *PodWatcher) Stop() {
	pw.cancel()
	<-pw.done
}

func trimRuntime(id string) string {
	for i := 0; i+3 <= len(id); i++ {
		if id[i:i+3] == "://" {
			return id[i+3:]
		}
	}
	return id
}
