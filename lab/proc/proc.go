// Package proc starts the lab's long-running processes detached from the
// caller and stops them again by PID. Each process has a PID file that also
// records the process's start time, so a PID the kernel reused for another
// process after a crash is never signalled.
package proc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Spec describes a process to start.
type Spec struct {
	// Args is the command line; Args[0] is looked up in PATH.
	Args []string
	// Env is appended to the caller's environment.
	Env []string
	// LogFile receives the process's standard output and standard error.
	LogFile string
	// PIDFile records the process's PID and start time.
	PIDFile string
	// Dir is the working directory; empty means the caller's.
	Dir string
	// SysProcAttr, when set, replaces the default of a new session.
	SysProcAttr *syscall.SysProcAttr
	// ExtraFiles are passed to the process from file descriptor 3 on.
	ExtraFiles []*os.File
}

// Process is a started or recorded process.
type Process struct {
	PID       int
	StartTime uint64
}

// Start starts the process in a new session, writes its PID file and
// returns without waiting for it. The process outlives the caller.
func Start(spec Spec) (Process, error) {
	if err := os.MkdirAll(filepath.Dir(spec.LogFile), 0o755); err != nil {
		return Process{}, fmt.Errorf("failed to create log directory: %w", err)
	}
	logFile, err := os.OpenFile(spec.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return Process{}, fmt.Errorf("failed to open log file: %w", err)
	}
	defer func() { _ = logFile.Close() }()

	cmd := exec.Command(spec.Args[0], spec.Args[1:]...)
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Dir = spec.Dir
	cmd.ExtraFiles = spec.ExtraFiles
	cmd.SysProcAttr = spec.SysProcAttr
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	if err := cmd.Start(); err != nil {
		return Process{}, fmt.Errorf("failed to start %s: %w", spec.Args[0], err)
	}
	p, err := Lookup(cmd.Process.Pid)
	if err != nil {
		return Process{}, err
	}
	// Reap the process if it exits while this program runs. After this
	// program exits, the process's new parent reaps it.
	go func() { _ = cmd.Wait() }()
	if spec.PIDFile != "" {
		if err := p.WriteFile(spec.PIDFile); err != nil {
			return p, err
		}
	}
	return p, nil
}

// Lookup returns the running process pid with its start time.
func Lookup(pid int) (Process, error) {
	st, err := startTime(pid)
	if err != nil {
		return Process{}, err
	}
	return Process{PID: pid, StartTime: st}, nil
}

// startTime reads field 22 of /proc/PID/stat: the start time in clock ticks
// since boot.
func startTime(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("failed to read the status of process %d: %w", pid, err)
	}
	// The command name in field 2 may contain spaces; fields after it start
	// after the last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("invalid /proc/%d/stat: %q", pid, s)
	}
	fields := strings.Fields(s[i+1:])
	// fields[0] is field 3 (state), so field 22 is fields[19].
	if len(fields) < 20 {
		return 0, fmt.Errorf("invalid /proc/%d/stat: %q", pid, s)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// WriteFile records the process in a PID file: "PID STARTTIME".
func (p Process) WriteFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("failed to create PID file directory: %w", err)
	}
	data := fmt.Sprintf("%d %d\n", p.PID, p.StartTime)
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		return fmt.Errorf("failed to write PID file %s: %w", path, err)
	}
	return nil
}

// ReadFile returns the process recorded in a PID file. A missing file
// returns an error that matches os.ErrNotExist.
func ReadFile(path string) (Process, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Process{}, err
	}
	var p Process
	if _, err := fmt.Sscanf(string(data), "%d %d", &p.PID, &p.StartTime); err != nil {
		return Process{}, fmt.Errorf("invalid PID file %s: %w", path, err)
	}
	return p, nil
}

// Alive reports whether the recorded process still runs: its PID exists,
// has the recorded start time and is not a zombie.
func (p Process) Alive() bool {
	if p.PID <= 0 {
		return false
	}
	st, err := startTime(p.PID)
	if err != nil || st != p.StartTime {
		return false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || len(s) < i+3 || s[i+2] != 'Z'
}

// Stop sends SIGTERM, waits up to grace for the process to exit, then sends
// SIGKILL and waits up to five seconds more. A process that is not running
// is not an error.
func (p Process) Stop(grace time.Duration) error {
	if !p.Alive() {
		return nil
	}
	if err := syscall.Kill(p.PID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("failed to signal process %d: %w", p.PID, err)
	}
	if p.wait(grace) {
		return nil
	}
	return p.Kill()
}

// Kill sends SIGKILL and waits up to five seconds for the process to exit.
func (p Process) Kill() error {
	if !p.Alive() {
		return nil
	}
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("failed to kill process %d: %w", p.PID, err)
	}
	if !p.wait(5 * time.Second) {
		return fmt.Errorf("process %d still runs 5s after SIGKILL", p.PID)
	}
	return nil
}

func (p Process) wait(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if !p.Alive() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// StopFile stops the process recorded in a PID file and removes the file.
// A missing PID file is not an error.
func StopFile(path string, grace time.Duration) error {
	p, err := ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := p.Stop(grace); err != nil {
		return err
	}
	return os.Remove(path)
}

// Children returns the PIDs of pid's direct children.
func Children(pid int) ([]int, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, fmt.Errorf("failed to list the threads of process %d: %w", pid, err)
	}
	var out []int
	for _, t := range tasks {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(data)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out, nil
}

// All returns the PIDs of every process on the machine.
func All() ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("failed to list processes: %w", err)
	}
	var out []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out, nil
}
