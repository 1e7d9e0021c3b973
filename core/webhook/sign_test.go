package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/store"
)

// TestSignMatchesTheStandardWebhooksTestVector reproduces the signature of
// the reference libraries' test (standard-webhooks libraries/go
// webhook_test.go, TestWebhookSign): only an exact match proves receivers'
// libraries will accept what we send.
func TestSignMatchesTheStandardWebhooksTestVector(t *testing.T) {
	key, err := ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
	if !Verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`),
		"v1,bm9wZQ== v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=") {
		t.Error("Verify rejects the vector among several signatures")
	}
	if Verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331, []byte(`{"test": 2432232314}`), got) {
		t.Error("Verify accepts a signature for another timestamp")
	}
}

func TestNewSecretFormat(t *testing.T) {
	s := NewSecret()
	if !strings.HasPrefix(s, SecretPrefix) {
		t.Fatalf("secret %q lacks %s", s, SecretPrefix)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, SecretPrefix))
	if err != nil || len(raw) < 24 || len(raw) > 64 {
		t.Errorf("secret %q: %d bytes, %v; the spec wants base64 of 24 to 64", s, len(raw), err)
	}
	if NewSecret() == s {
		t.Error("two secrets are equal")
	}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newBox(t *testing.T) *core.Box {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	b, err := core.NewBox(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func openStore(t *testing.T) (*store.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "flapjack.db")
	st, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, path
}

func TestSecretsCreatedOnceSealedAndRotated(t *testing.T) {
	st, path := openStore(t)
	box := newBox(t)
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := NewSecrets(st, box, clock)
	ctx := context.Background()

	// Created on first use, once, even by concurrent callers.
	var wg sync.WaitGroup
	got := make([]string, 6)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if got[i], err = NewSecrets(st, box, clock).Current(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for _, g := range got {
		if g != got[0] {
			t.Fatalf("concurrent first use gave different secrets: %v", got)
		}
	}
	first := got[0]
	if again, _ := s.Current(ctx); again != first {
		t.Errorf("Current changed: %s then %s", first, again)
	}
	keys, _ := s.SigningKeys(ctx)
	if len(keys) != 1 {
		t.Fatalf("%d signing keys before a rotation, want 1", len(keys))
	}

	// Rotation: a new current secret, and for 24 hours both sign.
	second, err := s.Rotate(ctx)
	if err != nil || second == first {
		t.Fatalf("Rotate = %q, %v", second, err)
	}
	if cur, _ := s.Current(ctx); cur != second {
		t.Errorf("Current after rotation = %s, want the new one", cur)
	}
	k1, _ := ParseSecret(first)
	k2, _ := ParseSecret(second)
	clock.Add(RotationOverlap - time.Minute)
	keys, _ = s.SigningKeys(ctx)
	if len(keys) != 2 || !bytes.Equal(keys[0], k2) || !bytes.Equal(keys[1], k1) {
		t.Errorf("signing keys within 24h of the rotation: %d, want new then old", len(keys))
	}
	header := SignatureHeader(keys, "wh-1", 1, []byte("{}"))
	if !Verify(first, "wh-1", 1, []byte("{}"), header) || !Verify(second, "wh-1", 1, []byte("{}"), header) || len(strings.Fields(header)) != 2 {
		t.Errorf("header %q does not carry both signatures", header)
	}
	clock.Add(time.Minute)
	keys, _ = s.SigningKeys(ctx)
	if len(keys) != 1 || !bytes.Equal(keys[0], k2) {
		t.Errorf("signing keys 24h after the rotation: %d, want only the new one", len(keys))
	}

	// Never in plaintext on disk.
	st.Close()
	for _, f := range []string{path, path + "-wal"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, sec := range []string{first, second, strings.TrimPrefix(first, SecretPrefix), strings.TrimPrefix(second, SecretPrefix)} {
			if bytes.Contains(b, []byte(sec)) {
				t.Errorf("%s holds a secret in plaintext", filepath.Base(f))
			}
		}
	}
}
