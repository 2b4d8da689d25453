// Command testworkload is the process the agent's integration tests run in
// containers. "counter" prints an increasing count every 100 ms, so a test
// can tell whether a restored process continued from its checkpoint or
// started again from one. "counter N" first fills N MiB of memory, so its
// checkpoint is large. "counter N sigterm" also prints a line and exits on
// SIGTERM, so a test can tell whether it ran its handler. "pause" sleeps
// until it is killed, as a sandbox's pause process does.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
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
		var ballast []byte
		if len(os.Args) > 2 {
			mib, err := strconv.Atoi(os.Args[2])
			if err != nil || mib < 0 {
				fmt.Fprintf(os.Stderr, "invalid ballast size %q: want MiB\n", os.Args[2])
				os.Exit(2)
			}
			ballast = make([]byte, mib<<20)
			// Pages of distinct bytes: CRIU writes each one.
			x := uint32(2463534242)
			for i := range ballast {
				x ^= x << 13
				x ^= x >> 17
				x ^= x << 5
				ballast[i] = byte(x)
			}
		}
		var count atomic.Int64
		if len(os.Args) > 3 && os.Args[3] == "sigterm" {
			terminate := make(chan os.Signal, 1)
			signal.Notify(terminate, syscall.SIGTERM)
			go func() {
				<-terminate
				fmt.Printf("terminated after count=%d\n", count.Load())
				os.Exit(0)
			}()
		}
		for {
			n := count.Add(1)
			fmt.Printf("count=%d pid=%d ballast=%d\n", n, os.Getpid(), len(ballast)>>20)
			time.Sleep(100 * time.Millisecond)
		}
	default:
		fmt.Fprintf(os.Stderr, "unknown mode %q: want counter or pause\n", mode)
		os.Exit(2)
	}
}
