package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/lpm-dev/lpm/test/bench/benchlab"
	"github.com/lpm-dev/lpm/test/bench/downtime"
	"github.com/lpm-dev/lpm/test/bench/imageprep"
)

func main() {
	labName := flag.String("lab", "bench7", "lab")
	mib := flag.Int("mib", 0, "")
	flag.Parse()
	ctx := context.Background()
	wd, _ := os.Getwd()
	l, err := benchlab.Open(*labName, wd)
	if err != nil {
		panic(err)
	}
	if err := l.EnsureNamespace(ctx); err != nil {
		panic(err)
	}
	if err := l.PrepareImages(ctx); err != nil {
		panic(err)
	}
	if os.Getenv("DBG") != "" {
		pod := benchlab.RandmemPod("dbg", l.Source.Name(), *mib)
		_ = l.Clients.Client.Create(ctx, pod)
		pw, _ := l.WatchPods(ctx)
		_, err := pw.WaitReady(ctx, "dbg", time.Minute)
		fmt.Println("ready", err)
		p, err := l.KubeletCheckpoint(ctx, l.Source, "dbg", "randmem", time.Minute)
		fmt.Println(p, err)
		return
	}
	r := &downtime.Runner{Lab: l, Log: func(f string, a ...any) { fmt.Printf(time.Now().Format("15:04:05 ")+f+"\n", a...) }}
	var run any
	if os.Getenv("CRIU") != "" {
		run = []any{r.CRIUFloor(ctx, *mib, 1), r.PageServer(ctx, *mib, 1)}
	} else if os.Getenv("FLOOR") != "" {
		run = r.RuntimeFloor(ctx, *mib, 1, &imageprep.Recipe{WorkDir: downtime.RecipeDir(*labName), Target: l.Target, TargetDir: "/var/lib/kubelet/lpm-bench"})
	} else {
		run = r.Migrate(ctx, *mib, 1)
	}
	data, _ := json.MarshalIndent(run, "", " ")
	fmt.Println(string(data))
}
