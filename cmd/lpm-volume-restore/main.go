// lpm-volume-restore is the copier of lpm's volume data image. It runs as
// the only regular init container of a restored pod, before the runtime
// restores the pod's containers. It copies the contents of the source
// pod's emptyDir volumes from the image into the new pod's volumes, which
// the init container mounts below one directory, each under its name.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/lpm-dev/lpm/internal/volumedata"
)

// terminationLog is the kubelet's default terminationMessagePath, whose
// contents become the container's termination message.
const terminationLog = "/dev/termination-log"

func main() {
	data := flag.String("data", volumedata.DataPath, "Tar stream of the volumes' contents.")
	volumesDir := flag.String("volumes-dir", volumedata.MountRoot,
		"Directory below which each emptyDir volume is mounted under its name.")
	flag.Parse()

	if err := run(*data, *volumesDir); err != nil {
		msg := fmt.Sprintf("failed to restore the emptyDir volumes: %v", err)
		fmt.Fprintln(os.Stderr, msg)
		_ = os.WriteFile(terminationLog, []byte(msg), 0o644)
		os.Exit(1)
	}
}

func run(data, volumesDir string) error {
	start := time.Now()
	entries, err := os.ReadDir(volumesDir)
	if err != nil {
		return fmt.Errorf("failed to list the mounted volumes: %w", err)
	}
	dirs := map[string]string{}
	for _, e := range entries {
		if e.IsDir() {
			dirs[e.Name()] = filepath.Join(volumesDir, e.Name())
		}
	}

	f, err := os.Open(data)
	if err != nil {
		return fmt.Errorf("failed to open the volume data: %w", err)
	}
	defer func() { _ = f.Close() }()
	stats, err := volumedata.Extract(f, dirs)
	if err != nil {
		return err
	}
	fmt.Printf("restored %d entries and %d bytes into %d volumes in %s\n", stats.Entries, stats.DataBytes,
		len(stats.Volumes), time.Since(start).Round(time.Millisecond))
	return nil
}
