// Command lpm-bench measures lpm in a running lab and writes
// docs/benchmarks.md with its tables and plots. `make bench` starts a lab of
// its own, installs lpm, runs this command and takes the lab down.
//
//	lpm-bench [flags] run      measure and write the results and the report
//	lpm-bench [flags] report   write the report from earlier results
//
// Every part runs side by side in one run, interleaved per size and run:
// lpm's migration, the runtime floor (with image preparation and the
// transfer channel on its archive), the CRIU floor and the page-server
// prototype. The controller scale benchmark follows; it needs
// KUBEBUILDER_ASSETS (etcd and kube-apiserver) but no lab.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/lpm-dev/lpm/internal/controller"
	"github.com/lpm-dev/lpm/test/bench/benchlab"
	"github.com/lpm-dev/lpm/test/bench/downtime"
	"github.com/lpm-dev/lpm/test/bench/imageprep"
	"github.com/lpm-dev/lpm/test/bench/report"
	"github.com/lpm-dev/lpm/test/bench/results"
	"github.com/lpm-dev/lpm/test/bench/scale"
)

// allParts are the parts of a run, in the order they run.
var allParts = []string{"migrate", "floor", "criu", "pageserver", "scale"}

type options struct {
	lab             string
	repo            string
	sizes           []int
	runs            int
	parts           map[string]bool
	scaleMigrations int
	scaleNodes      int
	scaleWorkers    int
	resultsPath     string
	docPath         string
	plotDir         string
	maxLoad         float64
	loadWait        time.Duration
	merge           bool
}

func main() {
	wd, _ := os.Getwd()
	o := options{}
	var sizes, parts string
	flag.StringVar(&o.lab, "lab", "bench", "name of the running lab to measure in")
	flag.StringVar(&o.repo, "repo", wd, "repository root")
	flag.StringVar(&sizes, "sizes", "0,256,1024,2048", "memory sizes of the workload, in MiB, comma-separated")
	flag.IntVar(&o.runs, "runs", 3, "runs per size and part")
	flag.StringVar(&parts, "parts", strings.Join(allParts, ","), "parts to run, comma-separated, of "+
		strings.Join(allParts, ", "))
	flag.IntVar(&o.scaleMigrations, "scale-migrations", 500, "PodMigrations created at once by the scale part")
	flag.IntVar(&o.scaleNodes, "scale-nodes", 50, "nodes of the scale part's fake cluster")
	flag.IntVar(&o.scaleWorkers, "scale-concurrency", controller.DefaultMaxConcurrentReconciles,
		"the controller's --max-concurrent-reconciles in the scale part (default: the controller's default)")
	flag.StringVar(&o.resultsPath, "results", "test/bench/results/latest.json", "results file to write or read")
	flag.StringVar(&o.docPath, "doc", "docs/benchmarks.md", "report to write")
	flag.StringVar(&o.plotDir, "plots", "docs/benchmarks", "directory of the report's PNG plots")
	flag.Float64Var(&o.maxLoad, "max-load", 1.5, "wait before measuring until the one-minute load average is below this")
	flag.BoolVar(&o.merge, "merge", false,
		"keep the parts that this run leaves out from the results file, to run one part again")
	flag.DurationVar(&o.loadWait, "load-wait", 30*time.Minute,
		"longest wait for the load to drop; the run then starts anyway and the report shows the load")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: lpm-bench [flags] run|report")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	var err error
	if o.sizes, err = parseSizes(sizes); err != nil {
		fatal(err)
	}
	if o.parts, err = parseParts(parts); err != nil {
		fatal(err)
	}
	switch {
	case o.runs < 1:
		fatal(fmt.Errorf("invalid -runs %d: want at least 1", o.runs))
	case o.maxLoad <= 0:
		fatal(fmt.Errorf("invalid -max-load %g: want a load average above 0", o.maxLoad))
	case o.scaleMigrations < 1 || o.scaleNodes < 2:
		fatal(fmt.Errorf("invalid -scale-migrations %d or -scale-nodes %d: want at least 1 and 2",
			o.scaleMigrations, o.scaleNodes))
	}

	// The scale part's envtest and fake agent log through
	// controller-runtime; only their errors matter here.
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	if cmd := flag.Arg(0); cmd != "run" && cmd != "report" {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if flag.Arg(0) == "run" {
		err = run(ctx, o)
	} else {
		err = writeReport(o)
	}
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "lpm-bench:", err)
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Printf("%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// parseParts parses the -parts flag and rejects a part it does not know.
func parseParts(s string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if !slices.Contains(allParts, p) {
			return nil, fmt.Errorf("invalid part %q in -parts: want some of %s", p, strings.Join(allParts, ", "))
		}
		out[p] = true
	}
	return out, nil
}

func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("invalid size %q: want MiB as a number of at least 0", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func run(ctx context.Context, o options) error {
	res := &results.Results{Started: time.Now(), Command: "lpm-bench " + strings.Join(os.Args[1:], " "),
		Sizes: o.sizes, Runs: o.runs}
	if cmd := os.Getenv("LPM_BENCH_COMMAND"); cmd != "" {
		res.Command = cmd
	}
	res.Host = hostInfo()
	// The lab must be up before the wait for the load, which may last long.
	if o.parts["migrate"] || o.parts["floor"] || o.parts["criu"] || o.parts["pageserver"] {
		if _, err := benchlab.Open(o.lab, o.repo); err != nil {
			return fmt.Errorf("lab %q is not usable (start it with `bin/lpm-lab --name %s up` and install): %w",
				o.lab, o.lab, err)
		}
	}
	res.Host.LoadBefore = waitForLoad(ctx, o.maxLoad, o.loadWait)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	loads := startLoadSampler(ctx)
	// Results go to a file of their own while the run lasts, and replace
	// the results file and the report only when the run completes: an
	// interrupted or failed run leaves the published figures as they were.
	partial := o.resultsPath + ".partial"
	save := func() {
		res.Host.LoadMax = loads.max()
		if err := os.MkdirAll(filepath.Dir(partial), 0o755); err == nil {
			if err := res.Write(partial); err != nil {
				logf("failed to write %s: %v", partial, err)
			}
		}
	}

	if o.merge {
		if old, err := results.Read(o.resultsPath); err == nil {
			keepParts(res, old, o.parts)
		}
	}
	var controllerBin string
	if o.parts["scale"] {
		dir, err := os.MkdirTemp("", "lpm-bench-")
		if err != nil {
			return err
		}
		defer func() { _ = os.RemoveAll(dir) }()
		if controllerBin, err = scale.BuildController(ctx, o.repo, dir); err != nil {
			return err
		}
	}

	if o.parts["migrate"] || o.parts["floor"] || o.parts["criu"] || o.parts["pageserver"] {
		if err := runLab(ctx, o, res, save); err != nil {
			res.Errors = append(res.Errors, err.Error())
			save()
			return fmt.Errorf("%w (the results so far are in %s; %s and %s are unchanged)", err, partial,
				o.resultsPath, o.docPath)
		}
	}
	if o.parts["scale"] {
		logf("controller scale: %d PodMigrations on %d nodes", o.scaleMigrations, o.scaleNodes)
		res.Scale = scale.Run(ctx, scale.Options{RepoDir: o.repo, Controller: controllerBin,
			Migrations: o.scaleMigrations,
			Nodes:      o.scaleNodes, Concurrency: o.scaleWorkers, Timeout: 30 * time.Minute, Log: logf})
		if res.Scale.Error != "" {
			res.Errors = append(res.Errors, "scale: "+res.Scale.Error)
		}
	}
	if ctx.Err() != nil {
		save()
		return fmt.Errorf("interrupted (the results so far are in %s; %s and %s are unchanged): %w", partial,
			o.resultsPath, o.docPath, ctx.Err())
	}
	res.Finished = time.Now()
	res.Host.LoadAfter = loadAverage()
	save()
	if err := os.Rename(partial, o.resultsPath); err != nil {
		return fmt.Errorf("failed to publish the results: %w", err)
	}
	return writeReport(o)
}

// runLab runs the parts that need the lab, interleaved so that every kind
// meets the same conditions: for each size and run, lpm's migration, the
// runtime floor, the CRIU floor and the page-server prototype.
func runLab(ctx context.Context, o options, res *results.Results, save func()) error {
	l, err := benchlab.Open(o.lab, o.repo)
	if err != nil {
		return err
	}
	if err := l.EnsureNamespace(ctx); err != nil {
		return err
	}
	if err := l.CleanNamespace(ctx, 3*time.Minute); err != nil {
		return err
	}
	logf("building and importing the randmem image")
	if err := l.PrepareImages(ctx); err != nil {
		return err
	}
	res.Host.Versions = nodeVersions(ctx, l)
	r := &downtime.Runner{Lab: l, Log: logf, Load: loadAverage}
	var recipe *imageprep.Recipe
	if o.parts["floor"] {
		if err := imageprep.CheckBuildah(); err != nil {
			res.Errors = append(res.Errors, err.Error())
		} else {
			recipe = &imageprep.Recipe{WorkDir: downtime.RecipeDir(o.lab), Target: l.Target,
				TargetDir: "/var/lib/kubelet/lpm-bench"}
		}
	}
	for _, mib := range o.sizes {
		for i := 1; i <= o.runs; i++ {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if o.parts["migrate"] {
				res.Migrations = append(res.Migrations, check(r.Migrate(ctx, mib, i), "lpm"))
			}
			if o.parts["floor"] {
				f := r.RuntimeFloor(ctx, mib, i, recipe)
				res.RuntimeFloor = append(res.RuntimeFloor, check(f.Floor, "runtime floor"))
				res.ImagePrep = append(res.ImagePrep, check(f.ImagePrep, "image preparation"))
				res.Transfer = append(res.Transfer, check(f.Transfer, "transfer"))
			}
			if o.parts["criu"] {
				res.CRIUFloor = append(res.CRIUFloor, check(r.CRIUFloor(ctx, mib, i), "CRIU floor"))
			}
			if o.parts["pageserver"] {
				res.PageServer = append(res.PageServer, check(r.PageServer(ctx, mib, i), "page server"))
			}
			save()
		}
	}
	return nil
}

// check logs a failed run; the report lists it and leaves it out of the
// figures.
func check(r results.Run, what string) results.Run {
	if r.Error != "" {
		logf("%s %d MiB run %d failed: %s", what, r.SizeMiB, r.Index, r.Error)
	}
	return r
}

func writeReport(o options) error {
	res, err := results.Read(o.resultsPath)
	if err != nil {
		return err
	}
	if err := report.Write(res, o.docPath, o.plotDir); err != nil {
		return err
	}
	logf("wrote %s and its plots in %s", o.docPath, o.plotDir)
	return nil
}

// keepParts copies into res the results of old for the parts not in run,
// with old's sizes and runs when res measures none of the lab's parts.
func keepParts(res, old *results.Results, run map[string]bool) {
	if !run["migrate"] {
		res.Migrations = old.Migrations
	}
	if !run["floor"] {
		res.RuntimeFloor, res.ImagePrep, res.Transfer = old.RuntimeFloor, old.ImagePrep, old.Transfer
	}
	if !run["criu"] {
		res.CRIUFloor = old.CRIUFloor
	}
	if !run["pageserver"] {
		res.PageServer = old.PageServer
	}
	if !run["scale"] {
		res.Scale = old.Scale
	}
	if !run["migrate"] && !run["floor"] && !run["criu"] && !run["pageserver"] {
		res.Sizes, res.Runs, res.Started = old.Sizes, old.Runs, old.Started
		res.Host.Versions = old.Host.Versions
		res.Notes = append(res.Notes, fmt.Sprintf("The lab's parts ran from %s; this run added %s.",
			old.Started.UTC().Format("15:04"), strings.Join(partNames(run), ", ")))
	}
}

func partNames(run map[string]bool) []string {
	var out []string
	for _, p := range allParts {
		if run[p] {
			out = append(out, p)
		}
	}
	return out
}
