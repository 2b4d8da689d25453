// Command testworkload is the process the agent's integration tests run in
// containers. "counter" prints an increasing count every 100 ms, so a test
// sees whether a restored process continued from its checkpoint or started
// again from one; "pause" sleeps until it is killed, as a sandbox's pause
// process does.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	mode := "counter"
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	switch mode {
	case "pause":
		signals := make(chan os.Signal, 1)
		signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
		<-signals
	case "counter":
		count := 0
		for {
			count++
			fmt.Printf("count=%d pid=%d\n", count, os.Getpid())
			time.Sleep(100 * time.Millisecond)
		}
	default:
		fmt.Fprintf(os.Stderr, "unknown mode %q: want counter or pause\n", mode)
		os.Exit(2)
	}
}
