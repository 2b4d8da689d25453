package proc

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestStartRecordsAndStops(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "sleep.pid")
	p, err := Start(Spec{Args: []string{"sleep", "60"}, LogFile: filepath.Join(dir, "sleep.log"), PIDFile: pidFile})
	if err != nil {
		t.Fatal(err)
	}
	recorded, err := ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	if recorded != p {
		t.Errorf("PID file records %+v, want %+v", recorded, p)
	}
	if !recorded.Alive() {
		t.Fatalf("process %d is not alive after Start", p.PID)
	}
	if err := StopFile(pidFile, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if p.Alive() {
		t.Errorf("process %d still alive after StopFile", p.PID)
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Errorf("PID file left after StopFile: %v", err)
	}
}

func TestAliveRejectsReusedPID(t *testing.T) {
	self, err := Lookup(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !self.Alive() {
		t.Fatalf("the test process is not alive")
	}
	// The same PID with another start time is another process: Stop must
	// leave it alone.
	other := Process{PID: self.PID, StartTime: self.StartTime + 1}
	if other.Alive() {
		t.Errorf("a process with another start time counts as alive")
	}
	if err := other.Stop(time.Second); err != nil {
		t.Errorf("Stop of a gone process: %v", err)
	}
}

func TestStopFileWithoutFile(t *testing.T) {
	if err := StopFile(filepath.Join(t.TempDir(), "missing.pid"), time.Second); err != nil {
		t.Errorf("StopFile of a missing PID file: %v", err)
	}
}
