package kubelet

import (
	"fmt"
	"net/http"
	"strings"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// Error is a failed kubelet call with the reason the controller shows.
type Error struct {
	// Reason is the typed reason.
	Reason lpmv1.Reason
	// StatusCode is the kubelet's HTTP status, 0 when none arrived.
	StatusCode int
	// Message is the kubelet's answer or the transport failure, for users.
	Message string
	// Err is the underlying error, if any.
	Err error
}

// Error returns the kubelet's response or the transport failure. The reason
// is not repeated: callers put it into the condition's reason.
func (e *Error) Error() string {
	if e.StatusCode != 0 {
		return fmt.Sprintf("kubelet returned %d: %s", e.StatusCode, e.Message)
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// runtimeCannotCheckpoint are fragments of the runtime errors that mean the
// node cannot checkpoint at all, as containerd and CRI-O word them.
var runtimeCannotCheckpoint = []string{
	"unknown method checkpointcontainer",
	"method checkpointcontainer not implemented",
	"code = unimplemented",
	"checkpoint/restore support not available",
	"criu binary not found",
	"criu binary not found or too old",
	"requires at least criu",
	"criu support is disabled",
	"failed to retrieve criu version",
	"checkpoint/restore is not enabled",
	"container checkpoint/restore is not supported",
}

// containerGone are fragments that mean the container stopped existing
// between the kubelet's lookup and the runtime's checkpoint.
var containerGone = []string{
	"not found",
	"does not exist",
	"code = notfound",
	"is not running",
	"container is not running",
	"cannot checkpoint a stopped container",
}

// classify maps a kubelet answer that is not 200 to an *Error.
func classify(status int, body []byte) *Error {
	msg := truncate(body)
	lower := strings.ToLower(msg)
	e := &Error{StatusCode: status, Message: msg}

	switch status {
	case http.StatusUnauthorized, http.StatusForbidden:
		e.Reason = lpmv1.ReasonKubeletUnauthorized
	case http.StatusNotFound:
		e.Reason = classifyNotFound(lower)
	case http.StatusInternalServerError:
		e.Reason = classifyRuntimeError(lower)
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout,
		http.StatusTooManyRequests:
		e.Reason = lpmv1.ReasonKubeletUnavailable
	default:
		e.Reason = lpmv1.ReasonCheckpointFailed
	}
	return e
}

// classifyNotFound tells the kubelet's own 404 answers (pod or container
// missing, a bad timeout) from the 404 of a kubelet that does not serve
// /checkpoint at all because the ContainerCheckpoint gate is off.
func classifyNotFound(body string) lpmv1.Reason {
	switch {
	case strings.Contains(body, "pod does not exist"):
		return lpmv1.ReasonPodGone
	case strings.HasPrefix(body, "container ") && strings.HasSuffix(body, " does not exist"):
		return lpmv1.ReasonContainerGone
	case strings.Contains(body, "cannot parse value of timeout parameter"):
		return lpmv1.ReasonCheckpointFailed
	}
	return lpmv1.ReasonCheckpointAPIDisabled
}

// classifyRuntimeError reads the runtime's error that the kubelet wraps in
// "checkpointing of ns/pod/container failed (...)".
func classifyRuntimeError(body string) lpmv1.Reason {
	for _, fragment := range runtimeCannotCheckpoint {
		if strings.Contains(body, fragment) {
			return lpmv1.ReasonRuntimeCannotCheckpoint
		}
	}
	if strings.Contains(body, "deadlineexceeded") || strings.Contains(body, "deadline exceeded") ||
		strings.Contains(body, "timed out") {
		return lpmv1.ReasonCheckpointTimedOut
	}
	// A failed dump's log names files that may not exist; only the
	// kubelet's or runtime's own words about the container count here.
	if !strings.Contains(body, "criu failed") {
		for _, fragment := range containerGone {
			if strings.Contains(body, fragment) {
				return lpmv1.ReasonContainerGone
			}
		}
	}
	return lpmv1.ReasonCheckpointFailed
}
