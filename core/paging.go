package core

import (
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// Lists of templates and sessions come in pages, newest first: a client
// never receives more than MaxPageLimit items in one answer, and a cursor
// says where the next page starts.
const (
	DefaultPageLimit = 50
	MaxPageLimit     = 500
)

// PageKey is the position after an item of a newest-first list: its
// creation time and id (ids break ties between items of one millisecond).
type PageKey struct {
	CreatedAt time.Time
	ID        string
}

// cursorPrefix versions the cursor's format, so a later one can change.
const cursorPrefix = "c1."

// EncodeCursor is the opaque cursor of the position after k.
func EncodeCursor(k PageKey) string {
	raw := strconv.FormatInt(k.CreatedAt.UnixMilli(), 10) + ":" + k.ID
	return cursorPrefix + base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// decodeCursor reads a cursor EncodeCursor made; anything else is a
// validation error naming the field.
func decodeCursor(field, s string) (*PageKey, error) {
	if s == "" {
		return nil, nil
	}
	bad := invalid(field, "is not a cursor this server gave out; pass next_cursor from the previous page unchanged")
	body, ok := strings.CutPrefix(s, cursorPrefix)
	if !ok || len(s) > 512 {
		return nil, bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return nil, bad
	}
	msText, id, ok := strings.Cut(string(raw), ":")
	ms, err := strconv.ParseInt(msText, 10, 64)
	if !ok || err != nil || id == "" {
		return nil, bad
	}
	return &PageKey{CreatedAt: time.UnixMilli(ms).UTC(), ID: id}, nil
}

// pageLimit reads a requested page size: DefaultPageLimit when absent,
// MaxPageLimit when above it (as the events limit is), an error below 1.
func pageLimit(limit *int) (int, error) {
	if limit == nil {
		return DefaultPageLimit, nil
	}
	if *limit < 1 {
		return 0, invalid("limit", "must be at least 1")
	}
	return min(*limit, MaxPageLimit), nil
}

// pageOf cuts items, read with one more than limit, to a page: at most
// limit items (never nil) and, when the extra one was there, the cursor
// after the last.
func pageOf[T any](items []T, limit int, key func(T) PageKey) ([]T, string) {
	if items == nil {
		items = []T{}
	}
	if len(items) <= limit {
		return items, ""
	}
	return items[:limit], EncodeCursor(key(items[limit-1]))
}
