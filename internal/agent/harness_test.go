package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/agent"
	"github.com/lpm-dev/lpm/internal/agent/internal/noderoot"
	"github.com/lpm-dev/lpm/internal/agent/internal/testenv"
	"github.com/lpm-dev/lpm/internal/agent/runtime"
)

const (
	agentNamespace = "lpm-system"
	agentAccount   = "lpm-agent"
	audience       = "lpm.dev/transfer"
	waitTimeout    = 90 * time.Second
)

var peerUser = "system:serviceaccount:" + agentNamespace + ":" + agentAccount

// world is one test's cluster: a real API server, a loopback registry
// with the workload's images, and nodes that each run a real containerd and
// an agent. The test plays the controller and the kubelet: it writes the
// controller's part of the PodMigration status and creates pods through
// the CRI.
type world struct {
	t       *testing.T
	ctx     context.Context
	cfg     *rest.Config
	c       client.Client
	cs      *kubernetes.Clientset
	reg     *testenv.Registry
	images  testenv.Images
	nodes   map[string]*agentNode
	counter atomic.Int32
}

// agentNode is a node with its containerd and agent.
type agentNode struct {
	name         string
	node         *noderoot.Node
	rt           *runtime.Runtime
	stateDir     string
	ckptDir      string
	tokenFile    string
	endpoint     string
	checkpointer agent.Checkpointer
	stop         func()
}

func newWorld(t *testing.T) *world {
	t.Helper()
	noderoot.RequireComponents(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	logf.SetLogger(testLogger(t))
	cfg := testenv.StartAPIServer(t)
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme(t)})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, ctx: ctx, cfg: cfg, c: c, cs: cs, nodes: map[string]*agentNode{}}
	w.reg = testenv.StartRegistry(t)
	w.images = testenv.PushWorkloadImages(t, w.reg)
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: agentNamespace}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: agentAccount, Namespace: agentNamespace}},
	} {
		if err := c.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// testLogger sends the agents' logs to the test log when LPM_TEST_VERBOSE
// is set, and drops them otherwise.
func testLogger(t *testing.T) logr.Logger {
	if os.Getenv("LPM_TEST_VERBOSE") == "" {
		return logr.Discard()
	}
	return funcr.New(func(prefix, args string) { t.Log(prefix, args) }, funcr.Options{Verbosity: 4})
}

// nodeOptions shape a node and its agent.
type nodeOptions struct {
	node         noderoot.Config
	checkpointer func(n *agentNode) agent.Checkpointer
}

// addNode starts containerd for a node, registers the Node, an agent pod
// bound to it and the agent's transfer token, and runs the agent.
func (w *world) addNode(name string, opts nodeOptions) *agentNode {
	t := w.t
	t.Helper()
	cfg := opts.node
	cfg.Name, cfg.SandboxImage, cfg.Registry = name, w.images.Pause, w.reg.Host
	if !cfg.DisableCRIU && !cfg.RestoreViaCreate {
		cfg.RestoreViaCreate = true
	}
	node := noderoot.Start(t, cfg)
	rt, err := runtime.Connect(w.ctx, node.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	for _, ref := range []string{w.images.Pause, w.images.Counter} {
		if _, err := rt.PullImage(w.ctx, ref, nil); err != nil {
			t.Fatalf("PullImage(%s) on %s error = %v", ref, name, err)
		}
	}

	n := &agentNode{name: name, node: node, rt: rt, stateDir: filepath.Join(node.Dir, "agent-state"),
		ckptDir: filepath.Join(node.LogDir, "checkpoints"), tokenFile: filepath.Join(node.Dir, "transfer-token")}
	if err := os.MkdirAll(n.ckptDir, 0o700); err != nil {
		t.Fatal(err)
	}
	w.createNode(name)
	w.writeAgentToken(n)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.endpoint = ln.Addr().String()
	_ = ln.Close()

	n.checkpointer = agent.Checkpointer(&criCheckpointer{w: w, n: n})
	if opts.checkpointer != nil {
		n.checkpointer = opts.checkpointer(n)
	}
	w.startAgent(n)
	t.Cleanup(func() { w.stopAgent(n) })
	w.nodes[name] = n
	w.waitFor(fmt.Sprintf("NodeAgent %s to publish its certificate", name), func() bool {
		na := &lpmv1.NodeAgent{}
		err := w.c.Get(w.ctx, types.NamespacedName{Name: name}, na)
		return err == nil && na.Status.ServingCertificateSHA256 != "" && na.Status.Capabilities != nil
	})
	return n
}

// startAgent runs the node's agent on its state directory.
func (w *world) startAgent(n *agentNode) {
	t := w.t
	t.Helper()
	mgr, err := ctrl.NewManager(w.cfg, ctrl.Options{
		Scheme:                 testenv.Scheme(t),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}: {Field: fields.OneTermEqualSelector("spec.nodeName", n.name)},
		}},
		Logger: logf.Log.WithName(n.name),
		// Several agents run in this one test process.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(w.ctx)
	rt, err := agent.Setup(ctx, mgr, agent.Config{
		Options: agent.Options{NodeName: n.name, TransferEndpoint: n.endpoint,
			CheckpointsDir: "/var/log/lpm/checkpoints", LocalCheckpointsDir: n.ckptDir, Snapshotter: "overlayfs",
			Version: "test", KubeletPodsDir: kubeletPodsDir(n), VolumeCopierPath: copierBinary(t)},
		StateDir: n.stateDir, ContainerdSocket: n.node.Socket, TransferListen: n.endpoint,
		TransferTokenFile: n.tokenFile, TransferAudience: audience, PeerUsers: []string{peerUser},
		InsecureRegistries: []string{w.reg.Host}, Checkpointer: n.checkpointer,
		Heartbeat: 5 * time.Second, ProbeInterval: time.Minute, GCInterval: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	n.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent of %s stopped with error %v", n.name, err)
		}
		_ = rt.Close()
	}
}

// stopAgent stops the node's agent, as a crash or an upgrade would.
func (w *world) stopAgent(n *agentNode) {
	if n.stop != nil {
		n.stop()
		n.stop = nil
	}
}

func (w *world) createNode(name string) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := w.c.Create(w.ctx, node); err != nil {
		w.t.Fatal(err)
	}
}

// writeAgentToken creates the agent's pod on its node and writes a token
// bound to it, as the kubelet's projected volume would.
func (w *world) writeAgentToken(n *agentNode) {
	t := w.t
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "lpm-agent-" + n.name, Namespace: agentNamespace},
		Spec: corev1.PodSpec{NodeName: n.name, ServiceAccountName: agentAccount,
			Containers: []corev1.Container{{Name: "agent", Image: "lpm-agent"}}},
	}
	if err := w.c.Create(w.ctx, pod); err != nil {
		t.Fatal(err)
	}
	token := w.boundToken(pod, audience)
	if err := os.WriteFile(n.tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (w *world) boundToken(pod *corev1.Pod, aud string) string {
	t := w.t
	tr, err := w.cs.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(w.ctx, pod.Spec.ServiceAccountName,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			Audiences: []string{aud}, ExpirationSeconds: ptr.To[int64](3600),
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name,
				UID: pod.UID},
		}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("failed to create a token bound to pod %s: %v", pod.Name, err)
	}
	return tr.Status.Token
}

// criCheckpointer calls the runtime's CRI CheckpointContainer, the call the
// kubelet makes for its checkpoint API, with the kubelet's archive naming.
// No kubelet runs in these tests. The kubelet client is tested against a
// server that returns the kubelet's responses.
type criCheckpointer struct {
	w *world
	n *agentNode
}

func (c *criCheckpointer) Checkpoint(ctx context.Context, namespace, pod, container string,
	timeout time.Duration) (string, error) {
	p := &corev1.Pod{}
	if err := c.w.c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: pod}, p); err != nil {
		return "", err
	}
	var id string
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == container {
			id = runtime.ContainerID(s.ContainerID)
		}
	}
	location := fmt.Sprintf("/var/log/lpm/checkpoints/checkpoint-%s_%s-%s-%s.tar", pod, namespace, container,
		time.Now().UTC().Format(time.RFC3339))
	_, err := c.n.rt.CRI().CheckpointContainer(ctx, &runtimeapi.CheckpointContainerRequest{
		ContainerId: id, Location: location, Timeout: int64(timeout / time.Second)})
	if err != nil {
		return "", fmt.Errorf("checkpointing of %s/%s/%s failed (%w)", namespace, pod, container, err)
	}
	return location, nil
}

// sourcePod is a pod of counters run through the CRI and registered with
// the status the kubelet would report. id and logPath are those of its
// first container.
type sourcePod struct {
	pod     *corev1.Pod
	cri     *testenv.Pod
	id      string
	logPath string
	ids     map[string]string
	logs    map[string]string
	node    *agentNode
}

// container is a container's name and runtime ID.
type container struct {
	name string
	id   string
}

func (w *world) runCounter(n *agentNode, name string, mutate func(*corev1.Pod), args ...string) *sourcePod {
	w.t.Helper()
	return w.runPod(n, name, w.images.Counter, []string{"counter"}, mutate, args...)
}

// runCounterFrom runs a counter from a given image.
func (w *world) runCounterFrom(n *agentNode, name, image string, mutate func(*corev1.Pod),
	args ...string) *sourcePod {
	w.t.Helper()
	return w.runPod(n, name, image, []string{"counter"}, mutate, args...)
}

// runPod runs a pod whose containers are all counters from image.
func (w *world) runPod(n *agentNode, name, image string, names []string, mutate func(*corev1.Pod),
	args ...string) *sourcePod {
	t := w.t
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec:       corev1.PodSpec{NodeName: n.name},
	}
	for _, c := range names {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: c, Image: image})
	}
	if mutate != nil {
		mutate(pod)
	}
	// The pod exists before its sandbox, whose UID is the pod's, as with a
	// kubelet: the runtime records it in each checkpoint.
	if err := w.c.Create(w.ctx, pod); err != nil {
		t.Fatal(err)
	}
	criPod := testenv.RunPod(w.ctx, t, n.rt.CRI(), n.node.CgroupParent, n.node.LogDir, name, string(pod.UID))
	src := &sourcePod{cri: criPod, node: n, ids: map[string]string{}, logs: map[string]string{}}
	var started []container
	for _, c := range names {
		id, err := testenv.CreateAndStart(w.ctx, n.rt.CRI(), criPod, c, image, args...)
		if err != nil {
			t.Fatal(err)
		}
		src.ids[c], src.logs[c] = id, filepath.Join(criPod.LogDir, c+".log")
		started = append(started, container{name: c, id: id})
	}
	for _, c := range names {
		testenv.WaitForCount(t, src.logs[c], 3, 60*time.Second)
	}
	src.id, src.logPath = src.ids[names[0]], src.logs[names[0]]
	w.setRunning(pod, n, started, image)
	src.pod = pod
	return src
}

// setRunning writes the pod status the kubelet reports for running
// containers.
func (w *world) setRunning(pod *corev1.Pod, n *agentNode, containers []container, image string) {
	t := w.t
	now := metav1.Now()
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning,
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue,
			LastTransitionTime: now}}}
	for _, c := range containers {
		st, err := n.rt.CRI().ContainerStatus(w.ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.id})
		if err != nil {
			t.Fatal(err)
		}
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.name, Ready: true, Image: image, ImageID: st.GetStatus().GetImageRef(),
			ContainerID: "containerd://" + c.id,
			State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}})
	}
	if err := w.c.Status().Update(w.ctx, pod); err != nil {
		t.Fatal(err)
	}
}

// newMigration creates a PodMigration and writes the controller's Pending
// status for it.
func (w *world) newMigration(src *sourcePod, target string, mutate func(*lpmv1.PodMigration)) *lpmv1.PodMigration {
	t := w.t
	pm := &lpmv1.PodMigration{
		ObjectMeta: metav1.ObjectMeta{Name: "move-" + src.pod.Name, Namespace: "default"},
		Spec: lpmv1.PodMigrationSpec{PodName: src.pod.Name, TargetNode: target,
			SourcePolicy: lpmv1.SourcePolicyDelete},
	}
	if mutate != nil {
		mutate(pm)
	}
	if err := w.c.Create(w.ctx, pm); err != nil {
		t.Fatal(err)
	}
	w.patchController(pm, map[string]any{"phase": lpmv1.PhasePending, "sourceNode": src.node.name,
		"targetNode": target, "sourcePodUID": string(src.pod.UID)})
	return pm
}

// patchController writes fields of the controller's part of the status.
func (w *world) patchController(pm *lpmv1.PodMigration, status map[string]any) {
	t := w.t
	data, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.c.Status().Patch(w.ctx, pm, client.RawPatch(types.MergePatchType, data)); err != nil {
		t.Fatalf("failed to patch PodMigration status: %v", err)
	}
}

func (w *world) setPhase(pm *lpmv1.PodMigration, phase lpmv1.MigrationPhase) {
	w.patchController(pm, map[string]any{"phase": phase})
}

// setRestoredCondition writes the controller's Restored condition.
func (w *world) setRestoredCondition(pm *lpmv1.PodMigration) {
	cur := w.get(pm)
	conditions := cur.Status.Conditions
	apimeta.SetStatusCondition(&conditions, metav1.Condition{Type: lpmv1.ConditionRestored,
		Status: metav1.ConditionTrue, Reason: string(lpmv1.ReasonVerified), Message: "verified by the test"})
	w.patchController(pm, map[string]any{"conditions": conditions})
}

func (w *world) get(pm *lpmv1.PodMigration) *lpmv1.PodMigration {
	cur := &lpmv1.PodMigration{}
	if err := w.c.Get(w.ctx, client.ObjectKeyFromObject(pm), cur); err != nil {
		w.t.Fatal(err)
	}
	return cur
}

// waitCondition waits for an agent's condition to be True or False and
// returns it.
func (w *world) waitCondition(pm *lpmv1.PodMigration, side, condType string) *metav1.Condition {
	w.t.Helper()
	return w.waitConditionStatus(pm, side, condType, "")
}

// waitConditionStatus waits for an agent's condition to have a status, or
// any status but Unknown when status is empty.
func (w *world) waitConditionStatus(pm *lpmv1.PodMigration, side, condType string,
	status metav1.ConditionStatus) *metav1.Condition {
	w.t.Helper()
	var found *metav1.Condition
	w.waitFor(fmt.Sprintf("%s condition %s %s", side, condType, status), func() bool {
		cur := w.get(pm)
		var conds []metav1.Condition
		if side == "source" && cur.Status.Source != nil {
			conds = cur.Status.Source.Conditions
		}
		if side == "target" && cur.Status.Target != nil {
			conds = cur.Status.Target.Conditions
		}
		found = apimeta.FindStatusCondition(conds, condType)
		if status != "" {
			return found != nil && found.Status == status
		}
		return found != nil && found.Status != metav1.ConditionUnknown
	})
	return found
}

func (w *world) waitFor(what string, cond func() bool) {
	w.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			w.t.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func requireTrue(t *testing.T, c *metav1.Condition, what string) {
	t.Helper()
	if c == nil || c.Status != metav1.ConditionTrue {
		t.Fatalf("%s = %+v, want True", what, c)
	}
}

func requireFalse(t *testing.T, c *metav1.Condition, what string, reason lpmv1.Reason) {
	t.Helper()
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != string(reason) {
		t.Fatalf("%s = %+v, want False with reason %s", what, c, reason)
	}
	t.Logf("%s: %s: %s", what, c.Reason, c.Message)
}

// restore plays the controller and the target kubelet: it creates the
// restored pod through the CRI from the images the target agent reported
// and registers it. It returns the pod and the restored containers' IDs.
func (w *world) restore(pm *lpmv1.PodMigration, n *agentNode) (*testenv.Pod, map[string]string) {
	t := w.t
	cur := w.get(pm)
	name := cur.Spec.PodName + "-restored"
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Annotations: map[string]string{
			"lpm.dev/migration": pm.Namespace + "/" + pm.Name, "lpm.dev/migration-uid": string(pm.UID)}},
		Spec: corev1.PodSpec{NodeName: n.name},
	}
	for _, c := range cur.Status.Target.Containers {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: c.Name, Image: c.Image})
	}
	if err := w.c.Create(w.ctx, pod); err != nil {
		t.Fatal(err)
	}
	criPod := testenv.RunPod(w.ctx, t, n.rt.CRI(), n.node.CgroupParent, n.node.LogDir, name, string(pod.UID))
	ids := map[string]string{}
	var started []container
	for _, c := range cur.Status.Target.Containers {
		id, err := testenv.CreateAndStart(w.ctx, n.rt.CRI(), criPod, c.Name, c.Image)
		if err != nil {
			t.Fatalf("failed to restore %s from %s: %v\n%s", c.Name, c.Image, err, w.runtimeLog(n, err))
		}
		ids[c.Name] = id
		started = append(started, container{name: c.Name, id: id})
	}
	w.setRunning(pod, n, started, cur.Status.Target.Containers[0].Image)
	w.patchController(pm, map[string]any{"phase": lpmv1.PhaseRestoring, "restoredPod": name})
	return criPod, ids
}

// runtimeLog returns the tail of the CRIU log an error names, read
// through containerd's root because it lives in the node's own /run.
func (w *world) runtimeLog(n *agentNode, err error) string {
	if data, rerr := os.ReadFile(filepath.Join(n.node.LogDir, "criu.log")); rerr == nil {
		return string(data[max(0, len(data)-8192):])
	}
	_, path, ok := strings.Cut(err.Error(), "log file: ")
	if !ok {
		return ""
	}
	info, ierr := n.rt.Info(w.ctx)
	if ierr != nil {
		return ""
	}
	data, rerr := os.ReadFile(fmt.Sprintf("/proc/%d/root%s", info.Pid, strings.TrimSpace(path)))
	if rerr != nil {
		return rerr.Error()
	}
	if len(data) > 4096 {
		data = data[len(data)-4096:]
	}
	return string(data)
}

// removePod deletes a pod object and its sandbox, as a kubelet would once
// the pod is deleted.
func (w *world) removePod(n *agentNode, name string, criPod *testenv.Pod) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}
	if err := w.c.Delete(w.ctx, pod, client.GracePeriodSeconds(0)); client.IgnoreNotFound(err) != nil {
		w.t.Fatal(err)
	}
	testenv.StopPod(w.ctx, w.t, n.rt.CRI(), criPod)
}

// leftovers lists what a node still holds of migrations: state records,
// archives, checkpoint images and unfinished ingests.
func (w *world) leftovers(n *agentNode) []string {
	var out []string
	records, _ := filepath.Glob(filepath.Join(n.stateDir, "migrations", "*.json"))
	out = append(out, records...)
	archives, _ := filepath.Glob(filepath.Join(n.ckptDir, "*.tar"))
	out = append(out, archives...)
	images, err := n.rt.ListImages(w.ctx, `labels."lpm.dev/migration-uid"`)
	if err != nil {
		w.t.Fatal(err)
	}
	for _, img := range images {
		out = append(out, "image "+img.Name)
	}
	statuses, err := n.rt.Client().ContentStore().ListStatuses(w.ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	for _, st := range statuses {
		if strings.HasPrefix(st.Ref, "lpm-") {
			out = append(out, "ingest "+st.Ref)
		}
	}
	return out
}

func (w *world) waitNoLeftovers(nodes ...*agentNode) {
	w.t.Helper()
	for _, n := range nodes {
		deadline := time.Now().Add(waitTimeout)
		for left := w.leftovers(n); len(left) > 0; left = w.leftovers(n) {
			if time.Now().After(deadline) {
				w.t.Fatalf("node %s still holds %v after %s", n.name, left, waitTimeout)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// taskState returns the state of a container's task.
func taskState(t *testing.T, ctx context.Context, n *agentNode, id string) runtime.TaskState {
	t.Helper()
	st, err := n.rt.TaskStatus(ctx, id)
	if err != nil {
		return runtime.TaskUnknown
	}
	return st
}
