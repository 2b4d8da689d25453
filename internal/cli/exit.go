package cli

import (
	"errors"
	"fmt"
)

// Exit statuses of kubectl-migrate.
const (
	// ExitOK means the command succeeded. For pod and check, the migration
	// or the preflight checks succeeded too.
	ExitOK = 0
	// ExitFailed means the migration or the preflight checks failed, or a
	// request to the API server failed.
	ExitFailed = 1
	// ExitUsage means the arguments or flags are invalid. Nothing was
	// created.
	ExitUsage = 2
	// ExitWaitTimedOut means the wait ended before the migration did. The
	// migration goes on.
	ExitWaitTimedOut = 3
	// ExitInterrupted means the user interrupted the wait (SIGINT). The
	// migration goes on.
	ExitInterrupted = 130
)

// ErrInterrupted is the cause the caller gives the context when the user
// interrupts the command, so that a wait stops and prints how to cancel.
var ErrInterrupted = errors.New("interrupted")

// errWaitTimedOut is the cause of the wait context's deadline.
var errWaitTimedOut = errors.New("wait timed out")

// exitError is an error with the exit status it maps to. When reported is
// true, the command has already written what went wrong, and Run prints
// nothing more.
type exitError struct {
	code     int
	err      error
	reported bool
}

func (e *exitError) Error() string { return e.err.Error() }

func (e *exitError) Unwrap() error { return e.err }

// usageErrorf returns an error for invalid arguments or flags.
func usageErrorf(format string, args ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, args...)}
}

// reportedError returns an error whose explanation the command has already
// written.
func reportedError(code int, err error) error {
	return &exitError{code: code, err: err, reported: true}
}

// exitCode maps an error returned by a command to the process's exit status.
func exitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var exitErr *exitError
	if errors.As(err, &exitErr) {
		return exitErr.code
	}
	return ExitFailed
}
