package core

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// Purposes bind a ciphertext to what it protects, so a sealed value cannot be
// moved to another row or use.
const (
	PurposeCursorKey     = "cursor_api_key"
	PurposeWebhookSecret = "webhook_secret"
)

const (
	boxVersion  = 1
	masterBytes = 32
	// MasterKeyFile is the file name of the master key inside the data directory.
	MasterKeyFile = "master.key"
)

// Box seals secrets with AES-256-GCM. A sealed value is
// version(1) | key id(4) | nonce(12) | ciphertext+tag, and its additional data
// binds it to purpose, org and row.
type Box struct {
	aead  cipher.AEAD
	keyID [4]byte
	check []byte
}

// NewBox makes a Box from a 32-byte master key.
func NewBox(master []byte) (*Box, error) {
	if len(master) != masterBytes {
		return nil, fmt.Errorf("master key must be %d bytes, got %d", masterBytes, len(master))
	}
	block, err := aes.NewCipher(master)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(master)
	b := &Box{aead: aead}
	copy(b.keyID[:], sum[:4])
	mac := hmac.New(sha256.New, master)
	mac.Write([]byte("flapjack master key check v1"))
	b.check = mac.Sum(nil)[:16]
	return b, nil
}

// ErrWrongMasterKey is why a process refuses to start with a master key
// other than the one its database was made with: every secret it sealed
// would fail to open.
var ErrWrongMasterKey = errors.New("the master key is not the one this database was made with")

// CheckValue identifies the master key without revealing anything of it
// (an HMAC of a fixed text under the key); the database keeps the first one
// it sees.
func (b *Box) CheckValue() []byte { return append([]byte(nil), b.check...) }

// Verify compares a stored check value with this Box's key.
func (b *Box) Verify(stored []byte) error {
	if !hmac.Equal(stored, b.check) {
		return ErrWrongMasterKey
	}
	return nil
}

func additionalData(purpose, org, row string) []byte {
	return []byte(purpose + "\x00" + org + "\x00" + row)
}

// Seal encrypts plaintext for (purpose, org, row).
func (b *Box) Seal(plaintext []byte, purpose, org, row string) []byte {
	out := make([]byte, 0, 1+4+b.aead.NonceSize()+len(plaintext)+b.aead.Overhead())
	out = append(out, boxVersion)
	out = append(out, b.keyID[:]...)
	nonce := make([]byte, b.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	out = append(out, nonce...)
	return b.aead.Seal(out, nonce, plaintext, additionalData(purpose, org, row))
}

// Open decrypts a value sealed for (purpose, org, row).
func (b *Box) Open(sealed []byte, purpose, org, row string) ([]byte, error) {
	head := 1 + 4 + b.aead.NonceSize()
	if len(sealed) < head+b.aead.Overhead() {
		return nil, errors.New("sealed value too short")
	}
	if sealed[0] != boxVersion {
		return nil, fmt.Errorf("sealed value has unknown version %d", sealed[0])
	}
	if [4]byte(sealed[1:5]) != b.keyID {
		return nil, errors.New("sealed value was made with another master key")
	}
	return b.aead.Open(nil, sealed[5:head], sealed[head:], additionalData(purpose, org, row))
}

// LoadMasterKey returns the master key: FLAPJACK_MASTER_KEY (base64 of 32 bytes)
// when envValue is set, else <dataDir>/master.key, created 0600 on first use.
// It refuses a key file that others can read, and refuses to create a new key
// when the database already holds ciphertext (that would orphan it).
func LoadMasterKey(dataDir, envValue string, haveCiphertext bool) ([]byte, error) {
	if envValue != "" {
		key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(envValue))
		if err != nil || len(key) != masterBytes {
			return nil, errors.New("FLAPJACK_MASTER_KEY must be the base64 encoding of 32 bytes")
		}
		return key, nil
	}
	path := filepath.Join(dataDir, MasterKeyFile)
	info, err := os.Stat(path)
	switch {
	case err == nil:
		if info.Mode().Perm()&0o077 != 0 {
			return nil, fmt.Errorf("refusing to use %s: it is readable by others (mode %v); run chmod 600 on it", path, info.Mode().Perm())
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
		if err != nil || len(key) != masterBytes {
			return nil, fmt.Errorf("%s does not hold a base64 32-byte key", path)
		}
		return key, nil
	case errors.Is(err, fs.ErrNotExist):
		if haveCiphertext {
			return nil, fmt.Errorf("master key %s is missing but the database holds encrypted secrets; restore the key file or set FLAPJACK_MASTER_KEY", path)
		}
		key := make([]byte, masterBytes)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		// Write a temporary file and link it into place, so a concurrent process
		// never reads a half-written key and exactly one key wins.
		tmp, err := os.CreateTemp(dataDir, ".master.key-*")
		if err != nil {
			return nil, err
		}
		defer os.Remove(tmp.Name())
		if _, err := tmp.WriteString(base64.StdEncoding.EncodeToString(key) + "\n"); err != nil {
			tmp.Close()
			return nil, err
		}
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return nil, err
		}
		if err := tmp.Close(); err != nil {
			return nil, err
		}
		if err := os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
			return LoadMasterKey(dataDir, "", haveCiphertext)
		} else if err != nil {
			return nil, err
		}
		// The new name must survive a crash too, or the key would be lost
		// with everything sealed under it.
		if err := syncDir(dataDir); err != nil {
			return nil, err
		}
		return key, nil
	default:
		return nil, err
	}
}

// syncDir makes a directory's entries durable. Windows cannot open a
// directory for syncing and does not need it.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// PrepareDataDir creates the data directory readable by its owner only, or
// makes an existing one so; it reports whether it had to tighten one others
// could read (the caller says so). Windows has no such modes.
func PrepareDataDir(dir string) (tightened bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("creating data directory: %w", err)
	}
	if runtime.GOOS == "windows" {
		return false, nil
	}
	info, err := os.Stat(dir)
	if err != nil {
		return false, err
	}
	if info.Mode().Perm()&0o077 == 0 {
		return false, nil
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return false, fmt.Errorf("making the data directory %s private: %w", dir, err)
	}
	return true, nil
}
