package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// Standard Webhooks: the secret format, and how long a rotated-out secret
// keeps signing so receivers can switch without missing a delivery.
const (
	SecretPrefix = "whsec_"
	// secretBytes is within the spec's 24 to 64 bytes.
	secretBytes = 32
	// RotationOverlap is how long both signatures are sent after a rotation.
	RotationOverlap = 24 * time.Hour
	// prefixSecretID starts the row id of a stored secret.
	prefixSecretID = "whs-"
)

// Header names of Standard Webhooks.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// NewSecret returns a fresh whsec_ secret: the prefix and the standard
// base64 of 32 random bytes.
func NewSecret() string {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b)
}

// ParseSecret returns the HMAC key of a whsec_ secret (the prefix is
// optional, as in the reference libraries).
func ParseSecret(secret string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, SecretPrefix))
	if err != nil || len(key) == 0 {
		return nil, errors.New("webhook secret is not whsec_ followed by base64")
	}
	return key, nil
}

// Sign returns the Standard Webhooks signature "v1,<base64 HMAC-SHA256 of
// id.timestamp.body>".
func Sign(key []byte, id string, timestamp int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(strconv.FormatInt(timestamp, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// SignatureHeader signs with every key, space-separated, current key first.
func SignatureHeader(keys [][]byte, id string, timestamp int64, body []byte) string {
	sigs := make([]string, len(keys))
	for i, k := range keys {
		sigs[i] = Sign(k, id, timestamp, body)
	}
	return strings.Join(sigs, " ")
}

// Verify reports whether header carries a valid signature of body by secret;
// receivers written in Go can use it (the README shows it).
func Verify(secret, id string, timestamp int64, body []byte, header string) bool {
	key, err := ParseSecret(secret)
	if err != nil {
		return false
	}
	want := Sign(key, id, timestamp, body)
	for _, sig := range strings.Fields(header) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return true
		}
	}
	return false
}

// SecretStore keeps the sealed secrets; *store.Store is one.
type SecretStore interface {
	// WebhookSecrets returns every stored secret, newest first.
	WebhookSecrets(ctx context.Context) ([]core.WebhookSecret, error)
	// AddFirstWebhookSecret stores w unless a current secret exists.
	AddFirstWebhookSecret(ctx context.Context, w core.WebhookSecret) (bool, error)
	// RotateWebhookSecret retires the current secret at w.CreatedAt, forgets
	// those retired before forgetBefore and stores w as current.
	RotateWebhookSecret(ctx context.Context, w core.WebhookSecret, forgetBefore time.Time) error
}

// Secrets is the installation's signing secret: created on first use, sealed
// by the Box, rotated on request.
type Secrets struct {
	store SecretStore
	box   *core.Box
	clock core.Clock
}

// NewSecrets returns the secrets of store; a nil clock is the system's.
func NewSecrets(store SecretStore, box *core.Box, clock core.Clock) *Secrets {
	if clock == nil {
		clock = core.SystemClock{}
	}
	return &Secrets{store: store, box: box, clock: clock}
}

// Current returns the current secret, creating it on first use.
func (s *Secrets) Current(ctx context.Context) (string, error) {
	for range 3 {
		list, err := s.store.WebhookSecrets(ctx)
		if err != nil {
			return "", err
		}
		for _, w := range list {
			if w.RetiredAt == nil {
				return s.open(w)
			}
		}
		// Store it, then read again: another process may have won the race
		// to the first secret, and its secret is the one to use.
		_, w := s.seal(NewSecret())
		if _, err := s.store.AddFirstWebhookSecret(ctx, w); err != nil {
			return "", err
		}
	}
	return "", errors.New("webhook secret: could not create the first secret")
}

// Rotate makes a new current secret and returns it; the old one keeps
// signing for RotationOverlap.
func (s *Secrets) Rotate(ctx context.Context) (string, error) {
	secret, w := s.seal(NewSecret())
	if err := s.store.RotateWebhookSecret(ctx, w, w.CreatedAt.Add(-RotationOverlap)); err != nil {
		return "", err
	}
	return secret, nil
}

// SigningKeys returns the HMAC keys to sign with now: the current secret's
// (created on first use), then those retired less than RotationOverlap ago.
func (s *Secrets) SigningKeys(ctx context.Context) ([][]byte, error) {
	if _, err := s.Current(ctx); err != nil {
		return nil, err
	}
	list, err := s.store.WebhookSecrets(ctx)
	if err != nil {
		return nil, err
	}
	now := s.clock.Now()
	var current, older [][]byte
	for _, w := range list {
		if w.RetiredAt != nil && now.Sub(*w.RetiredAt) >= RotationOverlap {
			continue
		}
		secret, err := s.open(w)
		if err != nil {
			return nil, err
		}
		key, err := ParseSecret(secret)
		if err != nil {
			return nil, err
		}
		if w.RetiredAt == nil {
			current = append(current, key)
		} else {
			older = append(older, key)
		}
	}
	return append(current, older...), nil
}

func (s *Secrets) seal(secret string) (string, core.WebhookSecret) {
	w := core.WebhookSecret{ID: core.NewID(prefixSecretID), CreatedAt: s.clock.Now()}
	w.Sealed = s.box.Seal([]byte(secret), core.PurposeWebhookSecret, "", w.ID)
	return secret, w
}

func (s *Secrets) open(w core.WebhookSecret) (string, error) {
	b, err := s.box.Open(w.Sealed, core.PurposeWebhookSecret, "", w.ID)
	if err != nil {
		return "", fmt.Errorf("webhook secret %s: %w", w.ID, err)
	}
	return string(b), nil
}
