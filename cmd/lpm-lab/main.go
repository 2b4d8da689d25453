// Command lpm-lab runs a real two-node Kubernetes cluster on this machine
// for lpm's demo and end-to-end tests. It must run as root.
//
//	lpm-lab up          build the images, start the control plane and the nodes
//	lpm-lab down        stop everything of the lab and remove its remains
//	lpm-lab status      show the lab's processes and nodes
//	lpm-lab remains     list what of the lab is still on the machine; exit 1 if anything
//	lpm-lab images      build the images and import them into the running nodes
//	lpm-lab install [DIR] install lpm from config/default (or the kustomization DIR)
//	lpm-lab demo        migrate a counting pod from node-a to node-b
//	lpm-lab kubeconfig  print the path of the admin kubeconfig
//	lpm-lab kubectl ... run kubectl with the admin kubeconfig
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/lpm-dev/lpm/lab"
)

func main() {
	global := flag.NewFlagSet("lpm-lab", flag.ExitOnError)
	opts := lab.DefaultOptions()
	global.StringVar(&opts.Name, "name", opts.Name,
		"name of the lab; every interface, cgroup and directory of the lab carries it")
	global.StringVar(&opts.StateBase, "state", opts.StateBase, "directory that holds the state of every lab")
	global.IntVar(&opts.Nodes, "nodes", opts.Nodes, "number of worker nodes")
	global.StringVar(&opts.RepoDir, "repo", opts.RepoDir, "repository root, for the image sources and config/")
	global.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: lpm-lab [flags] up|down|status|remains|images|install|demo|kubeconfig|kubectl [args]")
		global.PrintDefaults()
	}
	_ = global.Parse(os.Args[1:])
	if global.NArg() == 0 {
		global.Usage()
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code, err := lab.Run(ctx, opts, global.Arg(0), global.Args()[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "lpm-lab:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
