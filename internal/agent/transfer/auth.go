package transfer

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authenticationclient "k8s.io/client-go/kubernetes/typed/authentication/v1"
	"k8s.io/utils/clock"
)

// NodeNameExtra is the user-info extra key under which the API server puts
// the node of the pod a service-account token is bound to (Kubernetes 1.30
// and later).
const NodeNameExtra = "authentication.kubernetes.io/node-name"

// PodNameExtra is the extra key of the bound pod's name.
const PodNameExtra = "authentication.kubernetes.io/pod-name"

// reviewCacheTTL bounds how long a successful TokenReview is reused. A
// fetch makes several requests in a row; one review covers them.
const reviewCacheTTL = 10 * time.Second

// TokenReviewer authenticates peers with TokenReviews: the token must be
// valid for the audience, belong to one of the allowed service accounts
// and be bound to a pod on a node.
type TokenReviewer struct {
	reviews  authenticationclient.TokenReviewInterface
	audience string
	allowed  []string
	clock    clock.PassiveClock

	mu    sync.Mutex
	cache map[[sha256.Size]byte]cachedPeer
}

type cachedPeer struct {
	peer    *Peer
	expires time.Time
}

// NewTokenReviewer returns an authenticator for tokens of the audience
// whose user is one of allowedUsers (for example
// system:serviceaccount:lpm-system:lpm-agent).
func NewTokenReviewer(reviews authenticationclient.TokenReviewInterface, audience string, allowedUsers []string,
	clk clock.PassiveClock) *TokenReviewer {
	return &TokenReviewer{reviews: reviews, audience: audience, allowed: allowedUsers, clock: clk,
		cache: map[[sha256.Size]byte]cachedPeer{}}
}

// Authenticate reviews a token.
func (a *TokenReviewer) Authenticate(ctx context.Context, token string) (*Peer, error) {
	key := sha256.Sum256([]byte(token))
	now := a.clock.Now()
	a.mu.Lock()
	if cached, ok := a.cache[key]; ok && now.Before(cached.expires) {
		a.mu.Unlock()
		return cached.peer, nil
	}
	a.mu.Unlock()

	review, err := a.reviews.Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{a.audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("failed to review token: %w", err)
	}
	peer, err := a.check(review.Status)
	if err != nil {
		return nil, err
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	for k, v := range a.cache {
		if !now.Before(v.expires) {
			delete(a.cache, k)
		}
	}
	a.cache[key] = cachedPeer{peer: peer, expires: now.Add(reviewCacheTTL)}
	return peer, nil
}

func (a *TokenReviewer) check(status authenticationv1.TokenReviewStatus) (*Peer, error) {
	if !status.Authenticated {
		if status.Error != "" {
			return nil, fmt.Errorf("token is not authenticated: %s", status.Error)
		}
		return nil, errors.New("token is not authenticated")
	}
	if !slices.Contains(status.Audiences, a.audience) {
		return nil, fmt.Errorf("token is not valid for audience %q", a.audience)
	}
	if !slices.Contains(a.allowed, status.User.Username) {
		return nil, fmt.Errorf("user %q is not an lpm agent", status.User.Username)
	}
	nodes := status.User.Extra[NodeNameExtra]
	if len(nodes) != 1 || nodes[0] == "" {
		return nil, errors.New("token is not bound to a pod on a node")
	}
	peer := &Peer{Username: status.User.Username, NodeName: nodes[0]}
	if pods := status.User.Extra[PodNameExtra]; len(pods) == 1 {
		peer.PodName = pods[0]
	}
	return peer, nil
}
