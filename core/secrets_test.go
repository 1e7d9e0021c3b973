package core

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
)

func testKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestBoxRoundTripAndBinding(t *testing.T) {
	box, err := NewBox(testKey(t))
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("cursor_canary_123")
	sealed := box.Seal(secret, PurposeCursorKey, "org-1", "cs-1")
	if bytes.Contains(sealed, secret) {
		t.Fatal("sealed value contains the plaintext")
	}
	got, err := box.Open(sealed, PurposeCursorKey, "org-1", "cs-1")
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v; want %q", got, err, secret)
	}
	again := box.Seal(secret, PurposeCursorKey, "org-1", "cs-1")
	if bytes.Equal(sealed, again) {
		t.Error("two seals of the same value are equal: nonce not random")
	}
	// Moved to another row, org or purpose: refused.
	for _, ad := range [][3]string{{PurposeCursorKey, "org-1", "cs-2"}, {PurposeCursorKey, "org-2", "cs-1"}, {PurposeWebhookSecret, "org-1", "cs-1"}} {
		if _, err := box.Open(sealed, ad[0], ad[1], ad[2]); err == nil {
			t.Errorf("Open with %v succeeded, want failure", ad)
		}
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	if _, err := box.Open(tampered, PurposeCursorKey, "org-1", "cs-1"); err == nil {
		t.Error("Open of a tampered value succeeded")
	}
	other, _ := NewBox(testKey(t))
	if _, err := other.Open(sealed, PurposeCursorKey, "org-1", "cs-1"); err == nil {
		t.Error("Open with another master key succeeded")
	}
}

func TestLoadMasterKey(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadMasterKey(dir, "", true); err == nil {
		t.Fatal("missing key with ciphertext in the database: want refusal")
	}
	k1, err := LoadMasterKey(dir, "", false)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, MasterKeyFile))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v, %v; want 0600", info.Mode().Perm(), err)
	}
	k2, err := LoadMasterKey(dir, "", true)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("second load = %v; want the same key", err)
	}
	if err := os.Chmod(filepath.Join(dir, MasterKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadMasterKey(dir, "", true); err == nil {
		t.Error("world-readable key file: want refusal")
	}
	envKey := testKey(t)
	got, err := LoadMasterKey(t.TempDir(), base64.StdEncoding.EncodeToString(envKey), true)
	if err != nil || !bytes.Equal(got, envKey) {
		t.Errorf("env key = %v; want it used", err)
	}
	if _, err := LoadMasterKey(t.TempDir(), "not-base64!", false); err == nil {
		t.Error("bad FLAPJACK_MASTER_KEY accepted")
	}
}
