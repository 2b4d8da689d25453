// Package workload runs the lab's test workloads and migrations against a
// lab cluster: it creates counter pods, creates PodMigrations and follows
// them phase by phase, and reads the counts a pod printed. The demo and the
// end-to-end suite use it.
package workload

import (
	"bufio"
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/lab/images"
)

// Clients bundles a typed clientset (for logs) and a controller-runtime
// client that knows lpm's API.
type Clients struct {
	Kube   kubernetes.Interface
	Client client.Client
}

// NewClients returns clients for a REST configuration.
func NewClients(cfg *rest.Config) (*Clients, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := lpmv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("failed to create client: %w", err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Clients{Kube: kube, Client: c}, nil
}

// CounterPod returns a pod that runs the counter workload on a node,
// serving its state on port 8080.
func CounterPod(namespace, name, nodeName string) *corev1.Pod {
	grace := int64(2)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			NodeName:                      nodeName,
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name:            "counter",
				Image:           images.CounterRef,
				ImagePullPolicy: corev1.PullNever,
				Args:            []string{"-listen=:8080"},
				Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstrFromInt(8080)}},
					PeriodSeconds: 1,
				},
			}},
		},
	}
}

// EnsureNamespace creates a namespace unless it exists.
func (c *Clients) EnsureNamespace(ctx context.Context, name string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := c.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("failed to create namespace %s: %w", name, err)
	}
	return nil
}

// WaitPodReady waits until the pod is Ready and returns it.
func (c *Clients) WaitPodReady(ctx context.Context, namespace, name string,
	timeout time.Duration) (*corev1.Pod, error) {
	deadline := time.Now().Add(timeout)
	for {
		pod := &corev1.Pod{}
		err := c.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, pod)
		if err == nil && podReady(pod) {
			return pod, nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return nil, fmt.Errorf("pod %s/%s not Ready after %s: %w", namespace, name, timeout, err)
			}
			return nil, fmt.Errorf("pod %s/%s not Ready after %s: phase %s, %s", namespace, name, timeout,
				pod.Status.Phase, containerStates(pod))
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// WaitPodGone waits until the pod no longer exists.
func (c *Clients) WaitPodGone(ctx context.Context, namespace, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := c.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &corev1.Pod{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pod %s/%s still exists after %s", namespace, name, timeout)
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func containerStates(pod *corev1.Pod) string {
	var parts []string
	for _, s := range pod.Status.ContainerStatuses {
		switch {
		case s.State.Waiting != nil:
			parts = append(parts, fmt.Sprintf("%s waiting (%s: %s)", s.Name, s.State.Waiting.Reason, s.State.Waiting.Message))
		case s.State.Terminated != nil:
			parts = append(parts, fmt.Sprintf("%s terminated (%s)", s.Name, s.State.Terminated.Reason))
		default:
			parts = append(parts, s.Name+" running")
		}
	}
	return strings.Join(parts, ", ")
}

// Logs returns a container's log.
func (c *Clients) Logs(ctx context.Context, namespace, pod, container string) (string, error) {
	data, err := c.Kube.CoreV1().Pods(namespace).GetLogs(pod, &corev1.PodLogOptions{Container: container}).DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("failed to get the log of %s/%s: %w", namespace, pod, err)
	}
	return string(data), nil
}

var countPattern = regexp.MustCompile(`(?m)^(\w+)=(\d+) pid=`)

// Counts returns the counts a counter printed, in order.
func Counts(log string) []int {
	var out []int
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		if m := countPattern.FindStringSubmatch(sc.Text()); m != nil {
			n, _ := strconv.Atoi(m[2])
			out = append(out, n)
		}
	}
	return out
}

// LastCount returns the last count in a counter's log, or -1.
func LastCount(log string) int {
	counts := Counts(log)
	if len(counts) == 0 {
		return -1
	}
	return counts[len(counts)-1]
}

// Migration creates a PodMigration and reports its progress.
type Migration struct {
	Namespace string
	Name      string
	Spec      lpmv1.PodMigrationSpec
	// OnChange is called with the PodMigration each time its phase or a
	// condition changes.
	OnChange func(pm *lpmv1.PodMigration, change string)
	// OnPoll, when set, is called with the PodMigration after each poll.
	OnPoll func(pm *lpmv1.PodMigration)
}

// Run creates the PodMigration and waits until it succeeds or fails, or
// the timeout passes. It returns the last PodMigration observed.
func (m Migration) Run(ctx context.Context, c *Clients, timeout time.Duration) (*lpmv1.PodMigration, error) {
	pm := &lpmv1.PodMigration{
		ObjectMeta: metav1.ObjectMeta{Namespace: m.Namespace, Name: m.Name},
		Spec:       m.Spec,
	}
	if err := c.Client.Create(ctx, pm); err != nil {
		return nil, fmt.Errorf("failed to create PodMigration %s/%s: %w", m.Namespace, m.Name, err)
	}
	return m.Wait(ctx, c, timeout, func(p *lpmv1.PodMigration) bool {
		return p.Status.Phase == lpmv1.PhaseSucceeded || p.Status.Phase == lpmv1.PhaseFailed
	})
}

// Wait polls the PodMigration until done returns true or the timeout
// passes, reporting changes to OnChange.
func (m Migration) Wait(ctx context.Context, c *Clients, timeout time.Duration,
	done func(*lpmv1.PodMigration) bool) (*lpmv1.PodMigration, error) {
	deadline := time.Now().Add(timeout)
	seen := map[string]bool{}
	var last *lpmv1.PodMigration
	for {
		pm := &lpmv1.PodMigration{}
		err := c.Client.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: m.Name}, pm)
		if err == nil {
			last = pm
			for _, change := range changes(pm) {
				if !seen[change] {
					seen[change] = true
					if m.OnChange != nil {
						m.OnChange(pm, change)
					}
				}
			}
			if m.OnPoll != nil {
				m.OnPoll(pm)
			}
			if done(pm) {
				return pm, nil
			}
		} else if !apierrors.IsNotFound(err) {
			return last, err
		}
		if time.Now().After(deadline) {
			phase := "not found"
			if last != nil {
				phase = string(last.Status.Phase)
			}
			return last, fmt.Errorf("PodMigration %s/%s not done after %s (phase %s)", m.Namespace, m.Name, timeout, phase)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return last, err
		}
	}
}

// changes lists the phase and each condition's status as strings, so a
// change of any of them is a new string.
func changes(pm *lpmv1.PodMigration) []string {
	var out []string
	if pm.Status.Phase != "" {
		out = append(out, "phase "+string(pm.Status.Phase))
	}
	for _, c := range pm.Status.Conditions {
		out = append(out, fmt.Sprintf("condition %s=%s (%s)", c.Type, c.Status, c.Reason))
	}
	return out
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
