package downtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/agent/ckptimage"
	"github.com/lpm-dev/lpm/internal/agent/runtime"
	"github.com/lpm-dev/lpm/internal/controller/restoredpod"
	"github.com/lpm-dev/lpm/lab/node"
	"github.com/lpm-dev/lpm/test/bench/benchlab"
	"github.com/lpm-dev/lpm/test/bench/imageprep"
	"github.com/lpm-dev/lpm/test/bench/results"
)

// Stage names of the runtime floor. The floor is the checkpoint call plus
// the restored pod's create to Running; the image import in between is not
// part of it.
const (
	StageResponse       = "kubelet response"
	StageToRunning      = "to Running"
	StageCheckpointCall = "checkpoint call"
	StageCreateRunning  = "create to Running"
	StageCreateReady    = "create to Ready"
	StageFloor          = "runtime floor"
)

// FloorStages lists the runtime floor's stages in time order.
var FloorStages = []string{StageCRIUDump, StageRuntimeCopies, StageResponse, StageSandbox, StageRestoreCopy,
	StageCRIURestore, StageToRunning}

// Image preparation stage names of lpm's path.
const (
	PrepBuild         = "lpm build"
	PrepImportLocal   = "lpm import from file into the snapshot"
	PrepDirect        = "lpm transfer and import"
	PrepTotal         = "lpm total"
	PrepImportStored  = "lpm import from file through the content store"
	ChannelDirect     = "direct channel"
	ChannelPlainCopy  = "plain TCP copy"
	ChannelDirectMiBs = "directMiBps"
	ChannelPlainMiBs  = "plainMiBps"
)

// FloorResult is one runtime floor run with the image preparation and
// channel runs made on its archive.
type FloorResult struct {
	Floor     results.Run
	ImagePrep results.Run
	Transfer  results.Run
}

// RuntimeFloor checkpoints a randmem pod of mib MiB through the kubelet,
// imports its checkpoint image into node-b (not timed as part of the
// floor), and creates the restored pod there. On the same archive it then
// measures lpm's image preparation, the manual recipe and the transfer
// channel.
func (r *Runner) RuntimeFloor(ctx context.Context, mib, index int, recipe *imageprep.Recipe) FloorResult {
	res := FloorResult{Floor: r.newRun(mib, index), ImagePrep: r.newRun(mib, index), Transfer: r.newRun(mib, index)}
	err := r.runtimeFloor(ctx, &res, recipe)
	if err != nil {
		res.Floor.Error = err.Error()
	}
	if cerr := r.Lab.CleanNamespace(context.WithoutCancel(ctx), 3*time.Minute); cerr != nil {
		res.Floor.Error = errors.Join(err, cerr).Error()
	}
	return res
}

func (r *Runner) runtimeFloor(ctx context.Context, res *FloorResult, recipe *imageprep.Recipe) error {
	mib, index := res.Floor.SizeMiB, res.Floor.Index
	name := fmt.Sprintf("floor-%d-%d", mib, index)
	pods, err := r.Lab.WatchPods(ctx)
	if err != nil {
		return err
	}
	defer pods.Stop()
	containerID, err := r.startPod(ctx, pods, name, mib)
	if err != nil {
		return err
	}
	before, err := r.Lab.Checksum(ctx, name)
	if err != nil {
		return err
	}
	source := &corev1.Pod{}
	if err := r.Lab.Clients.Client.Get(ctx, client.ObjectKey{Namespace: benchlab.Namespace, Name: name},
		source); err != nil {
		return err
	}

	watches := append(sourceWatches(r.Lab.Source, containerID), targetWatches(r.Lab.Target)...)
	tracer, err := benchlab.StartTracer(ctx, []*node.Node{r.Lab.Source, r.Lab.Target}, watches)
	if err != nil {
		return err
	}
	defer tracer.Stop()

	// The checkpoint call, as lpm's source agent makes it, but without
	// pausing first: the container runs on, as the kubelet API leaves it.
	callStart := time.Now()
	nodePath, err := r.Lab.KubeletCheckpoint(ctx, r.Lab.Source, name, "randmem", 10*time.Minute)
	if err != nil {
		return err
	}
	callEnd := time.Now()
	archivePath := r.Lab.Source.HostPath(nodePath)
	defer func() { _ = os.Remove(archivePath) }()
	if err := r.Lab.Clients.Client.Delete(ctx, source, client.GracePeriodSeconds(1)); err != nil {
		return err
	}

	// The image is put in place on the target by lpm's code, from the local
	// file; this is also lpm's image preparation without the network.
	rt, err := r.Lab.Runtime(ctx, r.Lab.Target)
	if err != nil {
		return err
	}
	defer func() { _ = rt.Close() }()
	src := imageprep.Source{ArchivePath: archivePath, Container: "randmem", Pod: name,
		Namespace: benchlab.Namespace, PodUID: string(source.UID), ID: fmt.Sprintf("bench-%d-%d", mib, index)}
	img, buildTime, err := imageprep.Build(src)
	if err != nil {
		return err
	}
	imageName := fmt.Sprintf("localhost/lpm-bench/%s:local", name)
	importTime, err := imageprep.Import(ctx, rt, img, img, imageName, r.Lab.Target.HostPath("/proc"))
	if err != nil {
		return err
	}
	defer func() { _ = rt.RemoveImage(context.WithoutCancel(ctx), imageName) }()
	res.ImagePrep.Stages[PrepBuild] = buildTime.Seconds()
	res.ImagePrep.Stages[PrepImportLocal] = importTime.Seconds()
	res.ImagePrep.Values["archiveBytes"] = float64(img.Layer.Size)

	restoredName := name + "-restored"
	pod, err := floorPod(source, restoredName, r.Lab.Target.Name(), imageName)
	if err != nil {
		return err
	}
	createStart := time.Now()
	if err := r.Lab.Clients.Client.Create(ctx, pod); err != nil {
		return fmt.Errorf("failed to create the restored pod %s: %w", restoredName, err)
	}
	restored, err := pods.WaitReady(ctx, restoredName, 5*time.Minute)
	if err != nil {
		return err
	}
	if err := r.placeFloor(&res.Floor, tracer.Marks(), callStart, callEnd, createStart, restored); err != nil {
		return err
	}
	after, err := r.Lab.Checksum(ctx, restoredName)
	if err != nil {
		return err
	}
	if after != before {
		return fmt.Errorf("the restored pod's memory differs from the source's: checksum %s, want %s", after,
			before)
	}
	res.Floor.Values["checksumMatches"] = 1
	tracer.Stop()

	// The layer must leave the target's content store, or the next import
	// would find it there and skip the transfer.
	if err := r.Lab.Clients.Client.Delete(ctx, pod, client.GracePeriodSeconds(1)); err != nil {
		return err
	}
	if err := r.Lab.Clients.WaitPodGone(ctx, benchlab.Namespace, restoredName, 2*time.Minute); err != nil {
		return err
	}
	if err := rt.RemoveImage(ctx, imageName); err != nil {
		return err
	}

	// The rest of the image preparation on the same archive: lpm's direct
	// channel with the import, the channel alone, and the manual recipe.
	if err := r.prepareImages(ctx, res, rt, img, src, recipe); err != nil {
		res.ImagePrep.Error = err.Error()
	}
	return nil
}

// floorPod builds the restored pod as lpm's controller does, from the
// source pod, but owned by nothing and with no lpm annotation, so that no
// lpm agent or controller acts on it.
func floorPod(source *corev1.Pod, name, targetNode, image string) (*corev1.Pod, error) {
	pm := &lpmv1.PodMigration{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: source.Namespace,
		UID: "00000000-0000-0000-0000-000000000000"}}
	pod, err := restoredpod.Build(restoredpod.Params{Source: source, Migration: pm, Name: name,
		TargetNode: targetNode, Images: map[string]string{"randmem": image}})
	if err != nil {
		return nil, err
	}
	pod.OwnerReferences = nil
	pod.Annotations = nil
	pod.Labels["lpm.dev/bench"] = name
	return pod, nil
}

// placeFloor splits the runtime floor into stages.
func (r *Runner) placeFloor(run *results.Run, marks []benchlab.Mark, callStart, callEnd, createStart time.Time,
	restored benchlab.PodTimes) error {
	src, dst := r.Lab.Source.Name(), r.Lab.Target.Name()
	call, err := benchlab.Place(marks, []benchlab.Point{
		{Stage: "call", At: callStart},
		{Stage: StageCRIUDump, Match: benchlab.On(src, "create:ingest", "")},
		{Stage: StageRuntimeCopies, Match: benchlab.On(src, "close:archive", "")},
		{Stage: StageResponse, At: callEnd},
	})
	if err != nil {
		return err
	}
	create, err := benchlab.Place(marks, append(append([]benchlab.Point{{Stage: "create", At: createStart}},
		restorePoints(dst, restored.ContainerID)...), benchlab.Point{Stage: StageToRunning, At: restored.Running}))
	if err != nil {
		return err
	}
	for _, tl := range []benchlab.Timeline{call, create} {
		for name, v := range tl.Stages {
			run.Stages[name] = v
		}
	}
	run.Stages[StageCheckpointCall] = callEnd.Sub(callStart).Seconds()
	run.Stages[StageCreateRunning] = restored.Running.Sub(createStart).Seconds()
	run.Stages[StageCreateReady] = restored.Ready.Sub(createStart).Seconds()
	run.Stages[StageFloor] = run.Stages[StageCheckpointCall] + run.Stages[StageCreateRunning]
	run.Detail["stageOrder"] = slices.Concat(call.Order, create.Order)
	if missing := slices.Concat(call.Missing, create.Missing); len(missing) > 0 {
		run.Detail["missingMarks"] = missing
	}
	run.Detail["marks"] = marksDetail(marks, callStart.Add(-time.Second))
	r.logf("runtime floor %d MiB run %d: %.3fs (checkpoint call %.3fs, create to Running %.3fs)", run.SizeMiB,
		run.Index, run.Stages[StageFloor], run.Stages[StageCheckpointCall], run.Stages[StageCreateRunning])
	return nil
}

// prepareImages measures, on the floor's archive, lpm's direct channel
// with the import, the channel alone against a plain copy, and the recipe.
func (r *Runner) prepareImages(ctx context.Context, res *FloorResult, rt *runtime.Runtime, img *ckptimage.Image,
	src imageprep.Source, recipe *imageprep.Recipe) error {
	mib, index := res.Floor.SizeMiB, res.Floor.Index
	ch, err := imageprep.StartChannel(img, src.ID)
	if err != nil {
		return err
	}
	defer ch.Close()
	directName := fmt.Sprintf("localhost/lpm-bench/%s:direct", src.Pod)
	direct, err := imageprep.Import(ctx, rt, img, ch.Source, directName, r.Lab.Target.HostPath("/proc"))
	if err != nil {
		return err
	}
	_ = rt.RemoveImage(context.WithoutCancel(ctx), directName)
	res.ImagePrep.Stages[PrepDirect] = direct.Seconds()
	res.ImagePrep.Stages[PrepTotal] = res.ImagePrep.Stages[PrepBuild] + direct.Seconds()

	// The agent's other import path, through the content store, from the
	// local file.
	storedName := fmt.Sprintf("localhost/lpm-bench/%s:stored", src.Pod)
	if stored, err := imageprep.Import(ctx, rt, img, img, storedName, ""); err != nil {
		// A side measurement: the comparison with the recipe goes on.
		r.logf("import through the content store, %d MiB run %d failed: %v", mib, index, err)
	} else {
		res.ImagePrep.Stages[PrepImportStored] = stored.Seconds()
	}
	_ = rt.RemoveImage(context.WithoutCancel(ctx), storedName)

	channel, n, err := ch.ReadLayer(ctx, img)
	if err != nil {
		res.Transfer.Error = err.Error()
	} else {
		plain, m, err := imageprep.PlainCopy(ctx, src.ArchivePath)
		if err != nil {
			res.Transfer.Error = err.Error()
		} else {
			res.Transfer.Stages[ChannelDirect] = channel.Seconds()
			res.Transfer.Stages[ChannelPlainCopy] = plain.Seconds()
			res.Transfer.Values[ChannelDirectMiBs] = float64(n) / (1 << 20) / channel.Seconds()
			res.Transfer.Values[ChannelPlainMiBs] = float64(m) / (1 << 20) / plain.Seconds()
			res.Transfer.Values["bytes"] = float64(n)
		}
	}

	if recipe == nil {
		return nil
	}
	stages, err := recipe.Run(ctx, rt, src.ArchivePath, src.Container, fmt.Sprintf("%d-%d", mib, index))
	for name, v := range stages {
		res.ImagePrep.Stages["recipe "+name] = v
	}
	if err != nil {
		return fmt.Errorf("recipe: %w", err)
	}
	r.logf("image preparation %d MiB run %d: lpm %.3fs, recipe %.3fs", mib, index, res.ImagePrep.Stages[PrepTotal],
		stages[imageprep.RecipeTotal])
	return nil
}

// RecipeDir returns buildah's working directory for the lab.
func RecipeDir(labName string) string {
	return filepath.Join("/var/tmp", "lpm-bench-"+labName, "recipe")
}
