package restshim

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// ErrUnauthenticated is what an Authenticator returns for a token that does
// not grant access (unknown or revoked). Every such case gets the same 401.
var ErrUnauthenticated = errors.New("unauthenticated")

// Authenticator resolves a bearer token to the actor it acts as. The Handler
// checks the token's shape and checksum first, so an Authenticator only ever
// sees well-formed tokens.
type Authenticator interface {
	// Authenticate returns the actor, ErrUnauthenticated, or another error
	// when the answer cannot be known (the database is down): that is a 500,
	// not a 401.
	Authenticate(ctx context.Context, token string) (core.Actor, error)
}

// TokenStore is where tokens live; store.Store implements it.
type TokenStore interface {
	// ActorForToken returns the actor of the live token with this SHA-256,
	// and the token's id; core.ErrNotFound when there is none.
	ActorForToken(ctx context.Context, hash []byte) (core.Actor, string, error)
	// TouchToken records that the token was used at t.
	TouchToken(ctx context.Context, id string, t time.Time) error
}

// touchEvery bounds last-used writes: at most one per token per minute.
const touchEvery = time.Minute

// TokenAuthenticator authenticates tokens against a TokenStore and records
// their last use, cheaply. It is safe for concurrent use.
type TokenAuthenticator struct {
	store TokenStore
	log   *slog.Logger
	now   func() time.Time

	mu      sync.Mutex
	touched map[string]time.Time // token id → last recorded use
}

// NewTokenAuthenticator returns an Authenticator over ts; a nil logger discards.
func NewTokenAuthenticator(ts TokenStore, log *slog.Logger) *TokenAuthenticator {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &TokenAuthenticator{store: ts, log: log, now: time.Now, touched: map[string]time.Time{}}
}

// Authenticate looks the token up by its hash. Every request reads the
// database, so a token revoked by another process stops working at once.
func (a *TokenAuthenticator) Authenticate(ctx context.Context, token string) (core.Actor, error) {
	if !WellFormedToken(token) {
		return core.Actor{}, ErrUnauthenticated
	}
	h := HashToken(token)
	actor, id, err := a.store.ActorForToken(ctx, h[:])
	if errors.Is(err, core.ErrNotFound) {
		return core.Actor{}, ErrUnauthenticated
	}
	if err != nil {
		return core.Actor{}, err
	}
	if actor.OrgIDs == nil {
		actor.OrgIDs = []string{} // nil would mean every org to the Service
	}
	actor.AllOrgs = false
	a.touch(ctx, id)
	return actor, nil
}

// touch records the token's use at most once per touchEvery in this process;
// the store skips the write too when another process recorded it recently.
func (a *TokenAuthenticator) touch(ctx context.Context, id string) {
	now := a.now()
	a.mu.Lock()
	last, ok := a.touched[id]
	due := !ok || now.Sub(last) >= touchEvery
	if due {
		a.touched[id] = now
	}
	a.mu.Unlock()
	if !due {
		return
	}
	if err := a.store.TouchToken(context.WithoutCancel(ctx), id, now); err != nil {
		a.log.WarnContext(ctx, "recording a token's last use failed", "token_id", id, "err", err)
	}
}
