package restshim

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"hash/crc32"
	"strings"
)

// Token format: "fj_live_" + 32 base32 characters (160 random bits) + 7 base32
// characters of the CRC-32 of everything before them. The checksum lets a
// malformed or mistyped token be rejected without touching the database, and
// lets secret scanners recognise real tokens. A token is stored only as its
// SHA-256 (a token has 160 random bits, so a fast hash is enough: there is
// nothing to brute-force) plus its first characters for display.
const (
	// TokenPrefix starts every API token.
	TokenPrefix = "fj_live_"
	tokenBody   = 32 // base32 characters of randomness: 160 bits
	tokenCheck  = 7  // base32 characters of CRC-32
	// TokenLen is the length of every well-formed token.
	TokenLen = len(TokenPrefix) + tokenBody + tokenCheck
	// displayChars of the random part are kept for lists: 30 bits, which
	// leaves 130 unknown to anyone who reads the database.
	displayChars = 6
)

// tokenAlphabet is lower-case base32.
const tokenAlphabet = "abcdefghijklmnopqrstuvwxyz234567"

// tokenEncoding is lower-case base32 without padding: easy to read, no
// characters that need quoting in a shell or a URL.
func tokenEncoding() *base32.Encoding {
	return base32.NewEncoding(tokenAlphabet).WithPadding(base32.NoPadding)
}

// MintedToken is a new token: the plaintext, shown to its owner once, and
// what is stored.
type MintedToken struct {
	Token string
	// Hash is the SHA-256 of Token, the only form that is stored.
	Hash [32]byte
	// Prefix is the start of the token, shown in lists.
	Prefix string
}

// NewToken mints a token from the system's secure random source.
func NewToken() MintedToken {
	var raw [20]byte
	rand.Read(raw[:]) // never fails (crashes the program instead)
	body := TokenPrefix + tokenEncoding().EncodeToString(raw[:])
	tok := body + checksum(body)
	return MintedToken{Token: tok, Hash: HashToken(tok), Prefix: DisplayPrefix(tok)}
}

// checksum is the CRC-32 of s as 7 base32 characters: the first 7 of
// tokenEncoding's 8 for its 4 bytes and a zero byte. It is worked out here,
// not by that encoding, because every request checks one.
func checksum(s string) string {
	v := uint64(crc32.ChecksumIEEE([]byte(s))) << 8 // 40 bits
	var out [tokenCheck]byte
	for i := range out {
		out[i] = tokenAlphabet[v>>(35-5*i)&31]
	}
	return string(out[:])
}

// WellFormedToken reports whether s has the shape and checksum of a token.
func WellFormedToken(s string) bool {
	if len(s) != TokenLen || !strings.HasPrefix(s, TokenPrefix) {
		return false
	}
	for i := len(TokenPrefix); i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '2' <= c && c <= '7') {
			return false
		}
	}
	cut := len(s) - tokenCheck
	return checksum(s[:cut]) == s[cut:]
}

// HashToken is the stored form of a token.
func HashToken(tok string) [32]byte { return sha256.Sum256([]byte(tok)) }

// DisplayPrefix is the part of a token shown in lists, e.g. "fj_live_ab3d7q".
func DisplayPrefix(tok string) string {
	n := min(len(tok), len(TokenPrefix)+displayChars)
	return tok[:n]
}
