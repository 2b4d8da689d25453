// Package preflight holds the checks a migration passes before anything
// touches the source pod: the pod can move, the target node can take it and
// both nodes' agents can do their part. Every check is a pure function of
// the objects it is given.
package preflight

import (
	"fmt"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// Failure is a failed check. Field names the field of the pod, the node or
// the PodMigration that failed it, in the form kubectl explain uses.
type Failure struct {
	Reason  lpmv1.Reason
	Field   string
	Message string
}

// Error returns the field and the message, the text the PodMigration's
// condition carries.
func (f *Failure) Error() string {
	if f.Field == "" {
		return f.Message
	}
	return f.Field + ": " + f.Message
}

func fail(reason lpmv1.Reason, field, format string, args ...any) *Failure {
	return &Failure{Reason: reason, Field: field, Message: fmt.Sprintf(format, args...)}
}
