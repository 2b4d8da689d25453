package scale

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/test/bench/results"
)

// observation is what the watch showed of one object at one moment, by the
// host's clock when the event arrived.
type observation struct {
	at      time.Time
	kind    string // "migration", "pod" or "lease"
	name    string
	deleted bool

	// Of a migration:
	phase         lpmv1.MigrationPhase
	sourceNode    string
	targetNode    string
	readyTime     time.Time
	sourceTrue    map[string]bool
	targetTrue    map[string]bool
	restoredTrue  bool
	restoredPod   string
	podName       string
	phaseEntered  map[lpmv1.MigrationPhase]time.Time
	creationStamp time.Time

	// Of a pod:
	terminating bool
	ready       bool

	// Of a node's Lease, whose name is the node's:
	renewTime time.Time
}

// recorder watches the namespace's PodMigrations and pods, and the nodes'
// Leases, and keeps every observation.
type recorder struct {
	mu     sync.Mutex
	obs    []observation
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startRecorder(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme) (*recorder, error) {
	ctx, cancel := context.WithCancel(ctx)
	r := &recorder{cancel: cancel}
	wc, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		cancel()
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		cancel()
		return nil, err
	}
	r.loop(ctx, "migrations", func(rv string) (watch.Interface, error) {
		return wc.Watch(ctx, &lpmv1.PodMigrationList{}, client.InNamespace(Namespace),
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}})
	})
	r.loop(ctx, "pods", func(rv string) (watch.Interface, error) {
		return kube.CoreV1().Pods(Namespace).Watch(ctx, metav1.ListOptions{ResourceVersion: rv})
	})
	r.loop(ctx, "node Leases", func(rv string) (watch.Interface, error) {
		return kube.CoordinationV1().Leases(corev1.NamespaceNodeLease).Watch(ctx, metav1.ListOptions{ResourceVersion: rv})
	})
	return r, nil
}

// loop runs a watch and starts it again from the last resource version
// seen when the server ends it.
func (r *recorder) loop(ctx context.Context, what string, start func(rv string) (watch.Interface, error)) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		rv := ""
		for ctx.Err() == nil {
			w, err := start(rv)
			if err != nil {
				if ctx.Err() == nil {
					fmt.Fprintf(os.Stderr, "failed to watch %s: %v\n", what, err)
					time.Sleep(time.Second)
				}
				continue
			}
			for ev := range w.ResultChan() {
				now := time.Now()
				obj, ok := ev.Object.(client.Object)
				if !ok || ev.Type == watch.Error || ev.Type == watch.Bookmark {
					continue
				}
				rv = obj.GetResourceVersion()
				if o, ok := observe(obj, ev.Type == watch.Deleted, now); ok {
					r.mu.Lock()
					r.obs = append(r.obs, o)
					r.mu.Unlock()
				}
			}
			w.Stop()
		}
	}()
}

func observe(obj client.Object, deleted bool, now time.Time) (observation, bool) {
	switch o := obj.(type) {
	case *lpmv1.PodMigration:
		ob := observation{at: now, kind: "migration", name: o.Name, deleted: deleted, phase: o.Status.Phase,
			sourceNode: o.Status.SourceNode, targetNode: o.Status.TargetNode, restoredPod: o.Status.RestoredPod,
			podName:    o.Spec.PodName,
			sourceTrue: map[string]bool{}, targetTrue: map[string]bool{},
			phaseEntered: map[lpmv1.MigrationPhase]time.Time{}, creationStamp: o.CreationTimestamp.Time}
		if o.Status.Source != nil {
			for _, c := range o.Status.Source.Conditions {
				ob.sourceTrue[c.Type] = c.Status == metav1.ConditionTrue
			}
		}
		if o.Status.Target != nil {
			for _, c := range o.Status.Target.Conditions {
				ob.targetTrue[c.Type] = c.Status == metav1.ConditionTrue
			}
		}
		ob.restoredTrue = meta.IsStatusConditionTrue(o.Status.Conditions, lpmv1.ConditionRestored)
		if o.Status.RestoredReadyTime != nil {
			ob.readyTime = o.Status.RestoredReadyTime.Time
		}
		for _, t := range o.Status.PhaseTransitions {
			ob.phaseEntered[t.Phase] = t.Time.Time
		}
		return ob, true
	case *corev1.Pod:
		ob := observation{at: now, kind: "pod", name: o.Name, deleted: deleted,
			terminating: o.DeletionTimestamp != nil}
		for _, c := range o.Status.Conditions {
			if c.Type == corev1.PodReady {
				ob.ready = c.Status == corev1.ConditionTrue
			}
		}
		return ob, true
	case *coordinationv1.Lease:
		ob := observation{at: now, kind: "lease", name: o.Name, deleted: deleted}
		if o.Spec.RenewTime != nil {
			ob.renewTime = o.Spec.RenewTime.Time
		}
		return ob, true
	}
	return observation{}, false
}

func (r *recorder) stop() {
	r.cancel()
	r.wg.Wait()
}

func (r *recorder) events() []observation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]observation(nil), r.obs...)
}

// samples are the controller's resource use over the run.
type samples struct {
	rss        []sampleAt
	cpu        []sampleAt
	peakRSSMiB float64
	cpuSeconds float64
}

type sampleAt = results.Sample

// sampler reads the controller's /proc entries every half second.
type sampler struct {
	pid    int
	start  time.Time
	mu     sync.Mutex
	out    samples
	cancel context.CancelFunc
	done   chan struct{}
}

func startSampler(ctx context.Context, pid int) *sampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &sampler{pid: pid, start: time.Now(), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		ticker := time.NewTicker(500 * time.Millisecond)
		defer ticker.Stop()
		for {
			s.sample()
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
			}
		}
	}()
	return s
}

func (s *sampler) sample() {
	rss, hwm, err := readRSS(s.pid)
	if err != nil {
		return
	}
	cpu, err := readCPU(s.pid)
	if err != nil {
		return
	}
	at := time.Since(s.start).Seconds()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.out.rss = append(s.out.rss, sampleAt{Seconds: at, Value: rss})
	s.out.cpu = append(s.out.cpu, sampleAt{Seconds: at, Value: cpu})
	s.out.peakRSSMiB = max(s.out.peakRSSMiB, hwm)
	s.out.cpuSeconds = cpu
}

func (s *sampler) stop() samples {
	s.sample()
	s.cancel()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out
}

// readRSS returns the process's resident set and its peak (VmHWM), in MiB.
func readRSS(pid int) (float64, float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	var rss, hwm float64
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		kib, err := strconv.ParseFloat(fields[1], 64)
		if err != nil {
			continue
		}
		switch fields[0] {
		case "VmRSS:":
			rss = kib / 1024
		case "VmHWM:":
			hwm = kib / 1024
		}
	}
	return rss, hwm, nil
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat,
// which is 100 on Linux for every architecture Go supports.
const clockTicks = 100

// readCPU returns the process's user and system CPU time in seconds.
func readCPU(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may contain spaces; the fields after it follow the
	// last ')'.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("invalid /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseFloat(fields[11], 64)
	stime, err2 := strconv.ParseFloat(fields[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("invalid /proc/%d/stat", pid)
	}
	return (utime + stime) / clockTicks, nil
}
