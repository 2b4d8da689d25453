// Package report writes docs/benchmarks.md and its PNG plots from the
// results of one lpm-bench run.
package report

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/lpm-dev/lpm/test/bench/downtime"
	"github.com/lpm-dev/lpm/test/bench/imageprep"
	"github.com/lpm-dev/lpm/test/bench/results"
	"github.com/lpm-dev/lpm/test/bench/scale"
)

// Plot file names inside the plot directory.
const (
	plotDowntime   = "downtime.png"
	plotStages     = "lpm-stages.png"
	plotFloor      = "runtime-floor-stages.png"
	plotImagePrep  = "image-preparation.png"
	plotController = "controller-steps.png"
	plotRSS        = "controller-rss.png"
)

// Write renders res to docPath, with the plots in plotDir. The document
// links the plots relative to its own directory.
func Write(res *results.Results, docPath, plotDir string) error {
	if err := os.MkdirAll(plotDir, 0o755); err != nil {
		return err
	}
	rel, err := filepath.Rel(filepath.Dir(docPath), plotDir)
	if err != nil {
		return err
	}
	w := &writer{res: res, plotDir: plotDir, plotRel: filepath.ToSlash(rel)}
	if err := w.plots(); err != nil {
		return fmt.Errorf("failed to draw the plots: %w", err)
	}
	w.document()
	return os.WriteFile(docPath, []byte(w.b.String()), 0o644)
}

type writer struct {
	res     *results.Results
	plotDir string
	plotRel string
	b       strings.Builder
	drawn   map[string]bool
}

func (w *writer) p(format string, args ...any) {
	fmt.Fprintf(&w.b, format, args...)
	w.b.WriteString("\n")
}

// sec formats a summary of seconds as "median (min–max)".
func sec(s results.Summary) string {
	if s.N == 0 {
		return "–"
	}
	if s.N == 1 {
		return fmt.Sprintf("%.2f (one run)", s.Median)
	}
	return fmt.Sprintf("%.2f (%.2f–%.2f)", s.Median, s.Min, s.Max)
}

func (w *writer) stage(runs []results.Run, size int, stage string) results.Summary {
	return results.Summarize(results.StageValues(runs, size, stage))
}

func sizeName(mib int) string {
	switch {
	case mib == 0:
		return "0 (idle)"
	case mib%1024 == 0:
		return fmt.Sprintf("%d GiB", mib/1024)
	}
	return fmt.Sprintf("%d MiB", mib)
}

// pairedRatios divides the values of stage a in runs by those of stage b
// in others, pairing the runs of one size by their index: the runs of one
// index ran next to each other.
func pairedRatios(runs []results.Run, a string, others []results.Run, b string, size int) []float64 {
	byIndex := map[int]float64{}
	for _, r := range others {
		if r.SizeMiB == size && r.Error == "" {
			if v, ok := r.Stages[b]; ok && v > 0 {
				byIndex[r.Index] = v
			}
		}
	}
	var out []float64
	for _, r := range runs {
		if r.SizeMiB != size || r.Error != "" {
			continue
		}
		if v, ok := r.Stages[a]; ok {
			if d, ok := byIndex[r.Index]; ok {
				out = append(out, v/d)
			}
		}
	}
	return out
}

func (w *writer) document() {
	w.p("# Benchmarks")
	w.p("")
	w.p("This page is written by `make bench` (test/bench/cmd/lpm-bench) from the results in")
	w.p("test/bench/results/latest.json. Do not edit it by hand: run `make bench` again, or")
	w.p("`go run ./test/bench/cmd/lpm-bench report` to render it from the results file.")
	w.p("")
	w.p("Every figure below comes from one run on one machine, with every kind of measurement")
	w.p("interleaved per size and run, so that all of them met the same load. Figures are seconds,")
	w.p("as median (minimum–maximum) over the runs, unless a column says otherwise.")
	w.p("")
	w.runInfo()
	w.goals()
	w.downtimeSection()
	w.stagesSection()
	w.floorSection()
	w.belowFloorSection()
	w.imagePrepSection()
	w.transferSection()
	w.controllerSection()
	w.failures()
	w.method()
}

func (w *writer) runInfo() {
	res := w.res
	h := res.Host
	w.p("## The run")
	w.p("")
	w.p("| | |")
	w.p("|---|---|")
	w.p("| Date | %s to %s (UTC) |", res.Started.UTC().Format("2006-01-02 15:04"), res.Finished.UTC().Format("15:04"))
	w.p("| Command | `%s` |", res.Command)
	w.p("| Load average (1 min) | %.2f before, %.2f after, %.2f at most during the run |", h.LoadBefore, h.LoadAfter,
		h.LoadMax)
	w.p("| Machine | %d CPUs, %d MiB of memory, Linux %s |", h.CPUs, h.MemoryMiB, h.Kernel)
	var keys []string
	for k := range h.Versions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w.p("| %s | %s |", k, h.Versions[k])
	}
	w.p("| Sizes | %s MiB of random memory, %s each |", joinInts(res.Sizes), plural(res.Runs, "run"))
	w.p("")
	for _, n := range res.Notes {
		w.p("%s", n)
		w.p("")
	}
	if h.LoadBefore >= 1.5 || h.LoadMax >= 1.5 {
		w.p("NOTE: other work ran on this machine during the run (the load average was %.2f at most).", h.LoadMax)
		w.p("It slows every kind of measurement alike, because they were interleaved, but the absolute")
		w.p("figures are higher than on an idle machine.")
		w.p("")
	}
}

func joinInts(v []int) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprint(x)
	}
	return strings.Join(parts, ", ")
}

// mark returns the verdict of a goal.
func mark(met bool, measured bool) string {
	switch {
	case !measured:
		return "not measured"
	case met:
		return "met"
	}
	return "**missed**"
}

func (w *writer) goals() {
	res := w.res
	w.p("## Goals")
	w.p("")
	w.p("| Goal | Measured | Verdict |")
	w.p("|---|---|---|")

	idle := w.stage(res.Migrations, 0, downtime.StageDowntime)
	w.p("| Idle pod: downtime under 1.0 s | median %.2f s, at most %.2f s over %s | %s |", idle.Median,
		idle.Max, plural(idle.N, "run"), mark(idle.Median < 1.0, idle.N > 0))

	const gib = 1024
	lpm := w.stage(res.Migrations, gib, downtime.StageDowntime)
	floor := w.stage(res.RuntimeFloor, gib, downtime.StageFloor)
	ratio := results.Summarize(pairedRatios(res.Migrations, downtime.StageDowntime, res.RuntimeFloor,
		downtime.StageFloor, gib))
	w.p("| 1 GiB: downtime at most 1.3 × the runtime floor of the same run | lpm %.2f s, floor %.2f s: "+
		"%.2f × (run by run %.2f–%.2f) | %s |", lpm.Median, floor.Median, ratioOf(lpm, floor), ratio.Min, ratio.Max,
		mark(ratioOf(lpm, floor) <= 1.3, lpm.N > 0 && floor.N > 0))
	moving := w.movingShare(gib)
	w.p("| 1 GiB: image, transfer and import under 30%% of the runtime floor | %.2f s, %.0f%% of the floor | %s |",
		moving, 100*moving/max(floor.Median, 1e-9), mark(moving < 0.3*floor.Median, lpm.N > 0 && floor.N > 0))

	lpmPrep := w.stage(res.ImagePrep, gib, downtime.PrepTotal)
	recipe := w.stage(res.ImagePrep, gib, "recipe "+imageprep.RecipeTotal)
	w.p("| Image preparation at 1 GiB at least 10 × faster than the recipe | lpm %.2f s, recipe %.2f s: "+
		"%.1f × | %s |", lpmPrep.Median, recipe.Median, ratioOf(recipe, lpmPrep),
		mark(ratioOf(recipe, lpmPrep) >= 10, lpmPrep.N > 0 && recipe.N > 0))

	if s := res.Scale; s != nil && s.Error == "" {
		worst, step := 0.0, ""
		for _, name := range scale.Steps {
			if p := results.Percentile(s.Steps[name], 99); p > worst {
				worst, step = p, name
			}
		}
		w.p("| Controller: p99 step under 1 s at %d PodMigrations | slowest step's p99 %.2f s (%s) | %s |",
			s.Migrations, worst, step, mark(worst < 1, len(s.Steps) > 0))
		w.p("| Controller: peak RSS under 150 MiB | %.1f MiB | %s |", s.PeakRSSMiB, mark(s.PeakRSSMiB < 150, true))
		w.p("| Controller: caps respected throughout | at most %d running (cap %d), at most %d leaving one node "+
			"(cap %d) | %s |", s.MaxRunning, s.MaxMigrations, s.MaxOutboundObs, s.MaxOutbound,
			mark(s.MaxRunning <= s.MaxMigrations && s.MaxOutboundObs <= s.MaxOutbound, true))
	} else {
		w.p("| Controller at 500 PodMigrations | the scale part did not run or failed | not measured |")
	}
	w.p("")
}

func ratioOf(a, b results.Summary) float64 {
	if a.N == 0 || b.N == 0 || b.Median == 0 {
		return 0
	}
	return a.Median / b.Median
}

// movingShare returns the median time lpm spends between the archive and
// an image ready on the target: the image build and hand-off and the
// transfer with the extraction into the snapshot.
func (w *writer) movingShare(size int) float64 {
	var total float64
	for _, st := range []string{downtime.StageImageBuild, downtime.StageTransfer} {
		total += w.stage(w.res.Migrations, size, st).Median
	}
	return total
}

func (w *writer) downtimeSection() {
	res := w.res
	w.p("## Downtime against memory")
	w.p("")
	w.p("Downtime of lpm is the PodMigration's `status.downtime`: from the cut (the source agent's clock")
	w.p("before it pauses the pod) to the restored pod Ready (the target agent's clock). Both nodes of the")
	w.p("lab share the host's clock. The runtime floor is the kubelet's checkpoint call plus the restored")
	w.p("pod's create to Running, with the checkpoint image already on the target. The CRIU floor is")
	w.p("`runc checkpoint` plus `runc restore` of the same process on one node, with the images in the")
	w.p("node's tmpfs. The page-server prototype moves that process to the other node (see below).")
	w.p("")
	w.p("| Memory | lpm downtime | runtime floor | CRIU floor | page-server prototype | lpm / runtime floor | " +
		"lpm / CRIU floor |")
	w.p("|---|---|---|---|---|---|---|")
	for _, size := range res.Sizes {
		lpm := w.stage(res.Migrations, size, downtime.StageDowntime)
		floor := w.stage(res.RuntimeFloor, size, downtime.StageFloor)
		criu := w.stage(res.CRIUFloor, size, downtime.StageCRIUFloor)
		ps := w.stage(res.PageServer, size, downtime.StagePageServer)
		w.p("| %s | %s | %s | %s | %s | %.2f | %.2f |", sizeName(size), sec(lpm), sec(floor), sec(criu), sec(ps),
			ratioOf(lpm, floor), ratioOf(lpm, criu))
	}
	w.p("")
	w.image(plotDowntime, "Downtime against memory")
}

func (w *writer) image(name, alt string) {
	if !w.drawn[name] {
		return
	}
	w.p("![%s](%s/%s)", alt, w.plotRel, name)
	w.p("")
}

func (w *writer) stagesSection() {
	res := w.res
	w.p("## Where lpm's downtime goes")
	w.p("")
	w.p("The stages follow one another and add up to the downtime. Each boundary is an event that")
	w.p("containerd published on a node or a file that appeared on a node, recorded by the benchmark")
	w.p("with the host's clock (see Method).")
	w.p("")
	w.sizeTable(res.Migrations, append(slices.Clone(downtime.MigrationStages), downtime.StageDowntime))
	w.p("")
	w.p("What each stage holds:")
	w.p("")
	w.p("- **freeze**: the source agent pauses the container (cgroup freezer) after recording the cut.")
	w.p("- **CRIU dump**: the kubelet's checkpoint call up to the end of CRIU's dump: CRIU writes the")
	w.p("  memory pages into a directory in the node's /tmp.")
	w.p("- **runtime copies**: containerd tars that directory into its content store, extracts it again")
	w.p("  into the container's `ctrd-checkpoint` directory and tars that into the archive the kubelet")
	w.p("  names (containerd 2.3.7, internal/cri/server/container_checkpoint_linux.go). Three more")
	w.p("  copies of every page, two of them on disk.")
	w.p("- **image build**: lpm's source agent hashes and validates the archive in one read, builds the")
	w.p("  image around it, reports `Checkpointed` and `ImagesServed`; the target agent sees the report")
	w.p("  and opens the transfer.")
	w.p("- **transfer**: the archive, unchanged and uncompressed, streams over lpm's direct channel")
	w.p("  (TLS 1.3), verified by digest, and the target agent extracts it as it arrives into the")
	w.p("  overlayfs snapshot of the image, which it commits once the digest matched. The content")
	w.p("  store never holds the layer: the snapshot is the only copy on the target.")
	w.p("- **report, create pod**: the target waits until the CRI reports the image, writes")
	w.p("  `ImagesReady`, and the controller creates the restored pod.")
	w.p("- **sandbox**: the kubelet admits the pod and creates its sandbox (network namespace, pause")
	w.p("  container), then the CRI's CreateContainer starts.")
	w.p("- **restore copy**: containerd mounts the image's snapshot and copies all of it into the new")
	w.p("  container's `ctrd-restore` directory (a second copy on the target), then the kubelet starts")
	w.p("  the container.")
	w.p("- **CRIU restore**: runc and CRIU restore the process from `ctrd-restore`.")
	w.p("- **to Ready**: the readiness probe (every second) passes and the target agent sees Ready.")
	w.p("")
	w.image(plotStages, "Stages of lpm's downtime")
}

// sizeTable writes one row per stage and one column per size.
func (w *writer) sizeTable(runs []results.Run, stages []string) {
	res := w.res
	header := "| Stage |"
	sep := "|---|"
	for _, size := range res.Sizes {
		header += " " + sizeName(size) + " |"
		sep += "---|"
	}
	w.p("%s", header)
	w.p("%s", sep)
	for _, st := range stages {
		row := "| " + st + " |"
		any := false
		for _, size := range res.Sizes {
			s := w.stage(runs, size, st)
			any = any || s.N > 0
			row += " " + sec(s) + " |"
		}
		if any {
			w.p("%s", row)
		}
	}
}

func (w *writer) floorSection() {
	res := w.res
	w.p("## The runtime floor")
	w.p("")
	w.p("The kubelet's checkpoint call on a running container (the kubelet leaves it running) and the")
	w.p("restored pod's create to Running on the other node, with lpm's checkpoint image of the same")
	w.p("archive imported there beforehand. The stages use the same marks as lpm's.")
	w.p("")
	w.sizeTable(res.RuntimeFloor, append(slices.Clone(downtime.FloorStages), downtime.StageCheckpointCall,
		downtime.StageCreateRunning, downtime.StageCreateReady, downtime.StageFloor))
	w.p("")
	w.image(plotFloor, "Stages of the runtime floor")
	gib := 1024
	dump := w.stage(res.RuntimeFloor, gib, downtime.StageCRIUDump).Median
	copies := w.stage(res.RuntimeFloor, gib, downtime.StageRuntimeCopies).Median
	restoreCopy := w.stage(res.RuntimeFloor, gib, downtime.StageRestoreCopy).Median
	criuRestore := w.stage(res.RuntimeFloor, gib, downtime.StageCRIURestore).Median
	criu := w.stage(res.CRIUFloor, gib, downtime.StageCRIUFloor).Median
	floor := w.stage(res.RuntimeFloor, gib, downtime.StageFloor).Median
	if floor > 0 {
		w.p("At 1 GiB the runtime floor is %.2f s, of which CRIU's own work (dump %.2f s, restore %.2f s)", floor,
			dump, criuRestore)
		w.p("is %.2f s and the runtime's copies around it (%.2f s after the dump, %.2f s before the restore)",
			dump+criuRestore, copies, restoreCopy)
		w.p("are %.2f s. The CRIU floor of the same process is %.2f s.", copies+restoreCopy, criu)
		w.p("")
	}
}

func (w *writer) belowFloorSection() {
	res := w.res
	w.p("## Below the runtime floor")
	w.p("")
	w.p("The runtime floor is far above CRIU because containerd copies the dump three times before the")
	w.p("kubelet call returns (directory in /tmp, content store blob, `ctrd-checkpoint`, archive) and")
	w.p("once more before the restore (`ctrd-restore`, from the image's snapshot) before CRIU reads it.")
	w.p("A path below the floor would need:")
	w.p("")
	w.p("1. **One dump, straight to where it is read.** CRIU writes the pages into a memory-backed")
	w.p("   directory (the node's tmpfs) and nothing re-tars them: the runtime would hand that")
	w.p("   directory over instead of an archive. containerd 2.3's `CheckpointTaskRequest` has an")
	w.p("   `ImagePath` option that leaves the dump in place (plugins/services/tasks/local.go skips the")
	w.p("   content store when it is set), but the CRI's CheckpointContainer does not use it.")
	w.p("2. **Pages streamed to the target during the dump**, with CRIU's page server (`criu dump")
	w.p("   --page-server`, `runc checkpoint --page-server`), so the transfer overlaps the dump and")
	w.p("   no copy of the pages touches the source's disk.")
	w.p("3. **A restore that reads the received directory as it is**, without an image, a snapshot")
	w.p("   and `ctrd-restore`: containerd restores from a checkpoint directory when `Restore` is")
	w.p("   given a path (runc `restore --image-path`), which today the CRI reaches only through an")
	w.p("   image or an archive.")
	w.p("4. **The sandbox ready before the cut**: the target's pod sandbox (network namespace, pause")
	w.p("   container) does not depend on the dump and could be created while the source still runs.")
	w.p("")
	w.p("The page-server prototype measures 1 to 3 with runc and CRIU directly, outside Kubernetes:")
	w.p("the randmem process runs under runc on node-a, CRIU's page server on node-b receives the")
	w.p("pages over the lab network during `runc checkpoint --page-server`, the small remaining image")
	w.p("files are copied after the dump, and `runc restore` runs on node-b from node-b's tmpfs.")
	w.p("")
	w.p("| Memory | runc checkpoint with pages streamed | copy other images | runc restore | total | " +
		"runtime floor | lpm |")
	w.p("|---|---|---|---|---|---|---|")
	for _, size := range res.Sizes {
		w.p("| %s | %s | %s | %s | %s | %s | %s |", sizeName(size),
			sec(w.stage(res.PageServer, size, downtime.StageRuncCheckpoint)),
			sec(w.stage(res.PageServer, size, downtime.StageCopyImages)),
			sec(w.stage(res.PageServer, size, downtime.StageRuncRestore)),
			sec(w.stage(res.PageServer, size, downtime.StagePageServer)),
			sec(w.stage(res.RuntimeFloor, size, downtime.StageFloor)),
			sec(w.stage(res.Migrations, size, downtime.StageDowntime)))
	}
	w.p("")
	w.p("CRIU floor on one node, for comparison:")
	w.p("")
	w.p("| Memory | runc checkpoint | runc restore | total |")
	w.p("|---|---|---|---|")
	for _, size := range res.Sizes {
		w.p("| %s | %s | %s | %s |", sizeName(size), sec(w.stage(res.CRIUFloor, size, downtime.StageRuncCheckpoint)),
			sec(w.stage(res.CRIUFloor, size, downtime.StageRuncRestore)),
			sec(w.stage(res.CRIUFloor, size, downtime.StageCRIUFloor)))
	}
	w.p("")
	w.p("The runc times include entering the node's namespaces with nsenter (%s s per command).",
		fmt.Sprintf("%.3f", results.Summarize(allValues(res.CRIUFloor, "commandOverheadSeconds")).Median))
	w.p("The prototype still pays for the kubelet nothing: a product path would add the sandbox")
	w.p("(prepared before the cut, item 4), the restored pod's status and the readiness probe.")
	w.p("")
}

func allValues(runs []results.Run, name string) []float64 {
	var out []float64
	for _, r := range runs {
		if v, ok := r.Values[name]; ok && r.Error == "" {
			out = append(out, v)
		}
	}
	return out
}

func (w *writer) imagePrepSection() {
	res := w.res
	w.p("## Image preparation: lpm against the manual recipe")
	w.p("")
	w.p("On each runtime floor's archive: lpm's path is the source's build (one read that hashes and")
	w.p("validates the archive, the image around it, no copy) plus the direct channel on loopback")
	w.p("into the target's containerd snapshot, until the CRI reports the image. The recipe is the")
	w.p("documented one with %s from Debian on the host (no Docker daemon): `buildah from",
		res.Host.Versions["buildah"])
	w.p("scratch`, `buildah add` of the archive (which extracts it), `buildah config --annotation`,")
	w.p("`buildah commit`, `buildah push` to an OCI archive (gzip-compressed layers), a copy of the OCI")
	w.p("archive into the target node and `ctr images import` there, until the CRI reports the image.")
	w.p("The recipe's image carries its annotation on the manifest only, which containerd 2.3 does not")
	w.p("restore from (it reads `org.criu.checkpoint.container.name` on the index); it is measured for")
	w.p("its time only.")
	w.p("")
	stages := []string{downtime.PrepBuild, downtime.PrepDirect, downtime.PrepTotal}
	for _, st := range imageprep.RecipeStages {
		stages = append(stages, "recipe "+st)
	}
	stages = append(stages, "recipe "+imageprep.RecipeTotal)
	w.sizeTable(res.ImagePrep, stages)
	row := "| recipe / lpm |"
	for _, size := range res.Sizes {
		row += fmt.Sprintf(" %.1f × |", ratioOf(w.stage(res.ImagePrep, size, "recipe "+imageprep.RecipeTotal),
			w.stage(res.ImagePrep, size, downtime.PrepTotal)))
	}
	w.p("%s", row)
	w.p("")
	w.p("For reference, lpm's import of the same image from the local file (no network), by two paths.")
	w.p("The agent's path extracts the layer straight into its snapshot as it is read. The other path,")
	w.p("taken when the agent cannot reach containerd's snapshot directories, writes the layer into")
	w.p("the content store and then unpacks it into the snapshot:")
	w.p("")
	w.sizeTable(res.ImagePrep, []string{downtime.PrepImportLocal, downtime.PrepImportStored})
	w.p("")
	w.image(plotImagePrep, "Image preparation")
}

func (w *writer) transferSection() {
	res := w.res
	w.p("## Transfer")
	w.p("")
	w.p("The direct channel is lpm's transfer server and client (TLS 1.3, pinned certificates, bearer")
	w.p("token, digest verified while streaming) on loopback, reading the archive from the page cache")
	w.p("and discarding what arrives. The plain copy sends the same file over a plain TCP connection on")
	w.p("loopback (Go's io.Copy, which uses sendfile) to a reader that discards it. In a migration the")
	w.p("channel runs between the nodes' network namespaces over the lab bridge (MTU 1500), and the")
	w.p("target extracts what arrives into the image's snapshot. That rate is in the last column.")
	w.p("")
	w.p("| Memory | archive MiB | direct channel MiB/s | plain TCP copy MiB/s | channel / plain | " +
		"in the migration MiB/s |")
	w.p("|---|---|---|---|---|---|")
	for _, size := range res.Sizes {
		d := results.Summarize(results.ValueValues(res.Transfer, size, downtime.ChannelDirectMiBs))
		p := results.Summarize(results.ValueValues(res.Transfer, size, downtime.ChannelPlainMiBs))
		b := results.Summarize(results.ValueValues(res.Transfer, size, "bytes"))
		m := results.Summarize(results.ValueValues(res.Migrations, size, "transferMiBps"))
		w.p("| %s | %.0f | %s | %s | %.2f | %s |", sizeName(size), b.Median/(1<<20), rate(d), rate(p),
			ratioOf(d, p), rate(m))
	}
	w.p("")
	w.p("At 0 MiB the archive is about a megabyte and the rates say little.")
	w.p("")
}

func rate(s results.Summary) string {
	if s.N == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f (%.0f–%.0f)", s.Median, s.Min, s.Max)
}

func (w *writer) controllerSection() {
	s := w.res.Scale
	w.p("## Controller at scale")
	w.p("")
	if s == nil {
		w.p("The scale part did not run.")
		w.p("")
		return
	}
	w.p("%d PodMigrations created at once (64 clients in parallel) against a real etcd and", s.Migrations)
	w.p("kube-apiserver (envtest), one per pod, on %d nodes, without a target node so the controller", s.Nodes)
	w.p("picks one. The real lpm-controller binary runs as its own process with its defaults")
	w.p("(--max-migrations=%d, --max-outbound-per-node=%d, --max-concurrent-reconciles=%d). A fake agent",
		s.MaxMigrations, s.MaxOutbound, s.Concurrency)
	w.p("(test/fakeagent, named so because it runs no container) plays every node's agent and")
	w.p("kubelet and answers each step as soon as it sees it. A watch records when each status change")
	w.p("arrived; a step is the time from the observation that let the controller act to the")
	w.p("observation of the controller's write, so the watch's delay cancels out.")
	w.p("")
	if s.Error != "" {
		w.p("The scale part failed: %s", s.Error)
		w.p("")
	}
	w.p("| | |")
	w.p("|---|---|")
	w.p("| Succeeded / failed | %d / %d |", s.Succeeded, s.Failed)
	w.p("| Wall time, first create to last Succeeded | %.1f s |", s.WallSeconds)
	w.p("| Controller CPU time (user + system) | %.1f s |", s.CPUSeconds)
	w.p("| Controller peak RSS (VmHWM) | %.1f MiB |", s.PeakRSSMiB)
	w.p("| Most migrations running at once (watch) | %d (cap %d) |", s.MaxRunning, s.MaxMigrations)
	w.p("| Most migrations leaving one node at once (watch) | %d (cap %d) |", s.MaxOutboundObs, s.MaxOutbound)
	w.p("")
	w.p("| # | Controller step | n | p50 | p99 | max |")
	w.p("|---|---|---|---|---|---|")
	for i, name := range scale.Steps {
		v := s.Steps[name]
		if len(v) == 0 {
			continue
		}
		w.p("| %d | %s | %d | %.3f | %.3f | %.3f |", i+1, name, len(v), results.Percentile(v, 50),
			results.Percentile(v, 99), results.Summarize(v).Max)
	}
	w.p("")
	w.p("Time in each phase (the controller's `phaseTransitions`), including the fake agent's time and,")
	w.p("for Pending, the wait for a free slot:")
	w.p("")
	w.p("| Phase | p50 | p99 | max |")
	w.p("|---|---|---|---|")
	var phases []string
	for _, p := range scale.PhaseOrder {
		phases = append(phases, string(p))
	}
	phases = append(phases, "created → Succeeded")
	for _, name := range phases {
		v := s.Phases[name]
		if len(v) == 0 {
			continue
		}
		w.p("| %s | %.3f | %.3f | %.3f |", name, results.Percentile(v, 50), results.Percentile(v, 99),
			results.Summarize(v).Max)
	}
	w.p("")
	w.image(plotController, "Controller step latencies")
	w.image(plotRSS, "Controller resident memory")
	w.p("A migration that waits for a slot is reconciled as soon as a running migration leaves the")
	w.p("slots: the controller's PodMigration watch enqueues the oldest waiting migrations of the cluster")
	w.p("and of the freed source node (internal/controller/wake.go). A requeue every 5 s remains as the")
	w.p("fallback for the others.")
	w.p("")
}

func (w *writer) failures() {
	res := w.res
	var lines []string
	for _, group := range []struct {
		name string
		runs []results.Run
	}{{"lpm", res.Migrations}, {"runtime floor", res.RuntimeFloor}, {"CRIU floor", res.CRIUFloor},
		{"page server", res.PageServer}, {"image preparation", res.ImagePrep}, {"transfer", res.Transfer}} {
		for _, r := range group.runs {
			if r.Error != "" {
				lines = append(lines, fmt.Sprintf("- %s, %s, run %d: %s", group.name, sizeName(r.SizeMiB), r.Index,
					oneLine(r.Error)))
			}
		}
	}
	lines = append(lines, prefixAll("- ", res.Errors)...)
	if len(lines) == 0 {
		return
	}
	w.p("## Failed runs")
	w.p("")
	w.p("These runs are left out of the figures above.")
	w.p("")
	for _, l := range lines {
		w.p("%s", l)
	}
	w.p("")
}

func prefixAll(prefix string, v []string) []string {
	out := make([]string, len(v))
	for i, s := range v {
		out[i] = prefix + oneLine(s)
	}
	return out
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 400 {
		s = s[:400] + "…"
	}
	return s
}

func (w *writer) method() {
	w.p("## Method")
	w.p("")
	w.p("- The workload, test/bench/apps/randmem, fills N MiB with bytes from a PCG generator (which")
	w.p("  no compression shrinks) and writes every page. Its pod has an HTTP readiness probe every")
	w.p("  second. Each migrated or restored process is asked for the SHA-256 of its memory, which")
	w.p("  must equal the source's before the cut; a run whose memory differs fails.")
	w.p("- Marks: containerd's events of both nodes (`/tasks/paused`, `/content/create`,")
	w.p("  `/snapshot/commit`, `/tasks/start`, with containerd's timestamps) and inotify on the")
	w.p("  kubelet's checkpoint directory, the content stores' ingest directories, the CRI's container")
	w.p("  directories and the runtime's task bundles, with the benchmark's clock. Pods are watched")
	w.p("  through the API server. All of it uses the host's clock, which both lab nodes share.")
	w.p("- The lab runs every node on one host and one disk: a transfer between nodes crosses a Linux")
	w.p("  bridge, not a wire, and the page cache serves what another node just wrote.")
	w.p("- Each size runs `-runs` times, and each run does lpm, the runtime floor (with image")
	w.p("  preparation and the channel on its archive), the CRIU floor and the prototype in turn.")
	w.p("- Reproduce: `make bench` (lab `BENCH_LAB_NAME`, default `bench`; `BENCH_FLAGS` passes flags")
	w.p("  such as `-sizes=0,256 -runs=1` to lpm-bench). It needs what `make demo` needs, buildah")
	w.p("  (installed from Debian when missing) and the test assets of hack/test.sh. The full run")
	w.p("  took about 35 minutes here, after waiting up to `-load-wait` (30 minutes by default) for")
	w.p("  the load average to drop below `-max-load`. It starts the lab, takes it down at the end")
	w.p("  or on SIGINT and SIGTERM, and refuses a second run in the same lab. A run that completes")
	w.p("  replaces test/bench/results/latest.json, this page and its plots (`-results`, `-doc`,")
	w.p("  `-plots` choose other paths); a failed or interrupted run leaves them unchanged and keeps")
	w.p("  what it measured in the results file's `.partial` copy. `-merge` keeps the parts that a")
	w.p("  run leaves out (`-parts`) from the existing results file.")
	w.p("")
	w.p("Generated %s.", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
}

// plots draws every plot it has data for.
func (w *writer) plots() error {
	res := w.res
	w.drawn = map[string]bool{}
	draw := func(name string, f func(path string) error) error {
		if err := f(plotPath(w.plotDir, name)); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		w.drawn[name] = true
		return nil
	}
	if len(res.Migrations) > 0 {
		if err := draw(plotDowntime, func(path string) error {
			return linePlot("Downtime against memory (median, range)", "MiB of random memory", "seconds",
				[]series{
					summarySeries("lpm", res.Migrations, res.Sizes, downtime.StageDowntime),
					summarySeries("runtime floor", res.RuntimeFloor, res.Sizes, downtime.StageFloor),
					summarySeries("CRIU floor (one node)", res.CRIUFloor, res.Sizes, downtime.StageCRIUFloor),
					summarySeries("page-server prototype", res.PageServer, res.Sizes, downtime.StagePageServer),
				}, path)
		}); err != nil {
			return err
		}
		if err := draw(plotStages, func(path string) error {
			return w.stackedStages("lpm's downtime by stage (medians)", res.Migrations, downtime.MigrationStages,
				path)
		}); err != nil {
			return err
		}
	}
	if len(res.RuntimeFloor) > 0 {
		if err := draw(plotFloor, func(path string) error {
			return w.stackedStages("Runtime floor by stage (medians)", res.RuntimeFloor, downtime.FloorStages, path)
		}); err != nil {
			return err
		}
	}
	if len(res.ImagePrep) > 0 {
		if err := draw(plotImagePrep, func(path string) error {
			var cats []string
			values := map[string][]float64{}
			for _, size := range res.Sizes {
				cats = append(cats, sizeName(size))
				values["lpm"] = append(values["lpm"], w.stage(res.ImagePrep, size, downtime.PrepTotal).Median)
				values["recipe"] = append(values["recipe"],
					w.stage(res.ImagePrep, size, "recipe "+imageprep.RecipeTotal).Median)
			}
			return groupedBars("Image preparation, archive to image the CRI reports (median)", "seconds",
				cats, []string{"lpm", "recipe"}, values, false, path)
		}); err != nil {
			return err
		}
	}
	if s := res.Scale; s != nil && len(s.Steps) > 0 {
		if err := draw(plotController, func(path string) error {
			var cats []string
			values := map[string][]float64{}
			for i, name := range scale.Steps {
				if len(s.Steps[name]) == 0 {
					continue
				}
				cats = append(cats, fmt.Sprint(i+1))
				values["p50"] = append(values["p50"], results.Percentile(s.Steps[name], 50))
				values["p99"] = append(values["p99"], results.Percentile(s.Steps[name], 99))
			}
			return groupedBars(fmt.Sprintf("Controller steps at %d PodMigrations (numbered as in the table)",
				s.Migrations), "seconds", cats, []string{"p50", "p99"}, values, false, path)
		}); err != nil {
			return err
		}
		if len(s.RSS) > 0 {
			if err := draw(plotRSS, func(path string) error {
				return samplesPlot("Controller resident memory", "MiB", s.RSS, path)
			}); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *writer) stackedStages(title string, runs []results.Run, stages []string, path string) error {
	var cats []string
	values := map[string][]float64{}
	for _, size := range w.res.Sizes {
		cats = append(cats, sizeName(size))
		for _, st := range stages {
			values[st] = append(values[st], w.stage(runs, size, st).Median)
		}
	}
	return stackedBars(title, "seconds", cats, stages, values, path)
}

// plural returns n and the noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
