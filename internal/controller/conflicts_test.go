package controller

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
)

// reconcilerFunc is a reconciler that returns a fixed result, for the
// wrapper's tests.
type reconcilerFunc func() (ctrl.Result, error)

func (f reconcilerFunc) Reconcile(context.Context, ctrl.Request) (ctrl.Result, error) {
	return f()
}

func TestConflictsAwaitEvent(t *testing.T) {
	migrations := schema.GroupResource{Group: "lpm.dev", Resource: "podmigrations"}
	pods := schema.GroupResource{Resource: "pods"}
	conflict := apierrors.NewConflict(migrations, "move", errors.New("the object has been modified"))
	testCases := []struct {
		name       string
		result     ctrl.Result
		err        error
		wantResult ctrl.Result
		wantErr    bool
	}{
		{name: "success", result: ctrl.Result{RequeueAfter: time.Second}, wantResult: ctrl.Result{RequeueAfter: time.Second}},
		{name: "PodMigration conflict", err: conflict},
		{name: "wrapped PodMigration conflict", err: fmt.Errorf("failed to patch the status: %w", conflict)},
		{name: "pod conflict", err: apierrors.NewConflict(pods, "web", errors.New("UID precondition failed")),
			wantErr: true},
		{name: "other error", err: apierrors.NewNotFound(migrations, "move"), wantErr: true},
	}
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			wrapped := conflictsAwaitEvent{reconcilerFunc(func() (ctrl.Result, error) { return tc.result, tc.err })}
			got, err := wrapped.Reconcile(t.Context(), ctrl.Request{})
			if (err != nil) != tc.wantErr {
				t.Errorf("Reconcile() error = %v, want error %v", err, tc.wantErr)
			}
			if got != tc.wantResult {
				t.Errorf("Reconcile() result = %+v, want %+v", got, tc.wantResult)
			}
		})
	}
}
