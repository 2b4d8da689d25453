package agent

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
	"github.com/lpm-dev/lpm/internal/agent/state"
	"github.com/lpm-dev/lpm/internal/agent/transfer"
)

// Catalog decides per request what the transfer server serves. It serves
// an offer the agent registered only while the PodMigration, read again at
// the request, names this node as its source and the offer's target, and
// has not failed, succeeded or been deleted.
type Catalog struct {
	Client   client.Reader
	Offers   *transfer.OfferSet
	Store    *state.Store
	NodeName string
}

// Offer implements transfer.Catalog.
func (c *Catalog) Offer(ctx context.Context, uid string) (*transfer.Offer, error) {
	offer, err := c.Offers.Offer(ctx, uid)
	if err != nil || offer == nil {
		return nil, err
	}
	rec, err := c.Store.Load(uid, state.RoleSource)
	if err != nil || rec == nil {
		return nil, err
	}
	pm := &lpmv1.PodMigration{}
	if err := c.Client.Get(ctx, types.NamespacedName{Namespace: rec.Namespace, Name: rec.Name}, pm); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	switch {
	case string(pm.UID) != uid, pm.Status.SourceNode != c.NodeName, pm.DeletionTimestamp != nil,
		pm.Status.Phase == lpmv1.PhaseFailed, pm.Status.Phase == lpmv1.PhaseSucceeded,
		pm.Status.TargetNode != offer.TargetNode:
		return nil, nil
	}
	return offer, nil
}

// Fingerprints reads the certificate digests agents publish in their
// NodeAgents.
type Fingerprints struct {
	Client client.Reader
}

// Fingerprint implements transfer.Fingerprints.
func (f *Fingerprints) Fingerprint(ctx context.Context, node string) (string, error) {
	na := &lpmv1.NodeAgent{}
	if err := f.Client.Get(ctx, types.NamespacedName{Name: node}, na); err != nil {
		return "", fmt.Errorf("failed to get NodeAgent %s: %w", node, err)
	}
	if na.Status.ServingCertificateSHA256 == "" {
		return "", fmt.Errorf("NodeAgent %s publishes no certificate", node)
	}
	return na.Status.ServingCertificateSHA256, nil
}
