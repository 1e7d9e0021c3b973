package store

import (
	"database/sql"
	"encoding/json"
	"time"
)

// Times are stored as INTEGER unix milliseconds: exact, compact, sortable, and
// read back in UTC. Nil pointers are stored as NULL.

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func msPtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMilli()
}

func timePtr(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMS(v.Int64)
	return &t
}

func strArg(p *string) any {
	if p == nil {
		return nil
	}
	return *p
}

func strPtr(v sql.NullString) *string {
	if !v.Valid {
		return nil
	}
	s := v.String
	return &s
}

func intArg(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

func intPtr(v sql.NullInt64) *int64 {
	if !v.Valid {
		return nil
	}
	n := v.Int64
	return &n
}

// blobArg stores an empty secret as NULL: "no ciphertext" has one spelling.
func blobArg(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// emptyNull stores "" as NULL, for optional ids the core passes as strings.
func emptyNull(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// paramsArg encodes model params as JSON text; a nil map is NULL so that
// "unset" and "set to {}" stay distinct.
func paramsArg(m map[string]any) (any, error) {
	if m == nil {
		return nil, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

func paramsFrom(v sql.NullString) (map[string]any, error) {
	if !v.Valid {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(v.String), &m); err != nil {
		return nil, err
	}
	return m, nil
}

// placeholders returns "?, ?, ?" for n arguments.
func placeholders(n int) string {
	if n == 0 {
		return ""
	}
	b := make([]byte, 0, 3*n)
	for i := range n {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, '?')
	}
	return string(b)
}

// nullIfEmpty stores "" as NULL.
func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
