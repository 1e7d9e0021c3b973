package core

import (
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Limits on request fields.
const (
	MaxPromptChars      = 100_000
	MaxPreambleChars    = 100_000
	MaxNameChars        = 200
	MaxDescriptionChars = 2_000
	DefaultEventLimit   = 200
	MaxEventLimit       = 500
	MaxWaitSeconds      = 25
	MaxURLChars         = 2_048
	MaxRefChars         = 255
)

func checkLen(field, v string, max int) error {
	if n := utf8.RuneCountInString(v); n > max {
		return invalid(field, "must be at most %d characters (got %d)", max, n)
	}
	if !utf8.ValidString(v) {
		return invalid(field, "must be valid UTF-8")
	}
	return nil
}

// ValidateText refuses what would act on a terminal rather than show on it:
// control characters (C0, DEL, C1; newlines and tabs only where multiline)
// and the bidirectional overrides and isolates that reorder what a reader
// sees (U+202A-U+202E, U+2066-U+2069), plus line and paragraph separators
// in single-line text. Names are single-line; descriptions are not.
func ValidateText(field, v string, multiline bool) error {
	for _, r := range v {
		switch {
		case multiline && (r == '\n' || r == '\t' || r == '\r'):
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			return invalid(field, "must not contain control characters (found U+%04X)", r)
		case r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069:
			return invalid(field, "must not contain bidirectional override characters (found U+%04X)", r)
		case !multiline && (r == 0x2028 || r == 0x2029):
			return invalid(field, "must be a single line (found U+%04X)", r)
		}
	}
	return nil
}

// ValidatePrompt checks a prompt: non-empty and at most MaxPromptChars.
func ValidatePrompt(p string) error {
	if strings.TrimSpace(p) == "" {
		return invalid("prompt", "is required and must not be blank")
	}
	return checkLen("prompt", p, MaxPromptChars)
}

// scpLikeURL matches git's scp-like syntax user@host:path.
var scpLikeURL = regexp.MustCompile(`^[A-Za-z0-9._~-]+@[A-Za-z0-9.-]+:[^/\\-][^\x00-\x1f]*$|^[A-Za-z0-9._~-]+@[A-Za-z0-9.-]+:/[^\x00-\x1f]*$`)

// ValidateRepoURL checks a repository URL: https://, ssh://, git@host:path,
// file:// or an absolute path; local forms (file://, paths) only when allowLocal.
func ValidateRepoURL(field, raw string, allowLocal bool) error {
	if raw == "" {
		return invalid(field, "must not be empty")
	}
	if len(raw) > MaxURLChars {
		return invalid(field, "must be at most %d characters", MaxURLChars)
	}
	if strings.HasPrefix(raw, "-") {
		return invalid(field, "must not start with '-'")
	}
	for _, r := range raw {
		if r < 0x20 || r == 0x7f || r == ' ' {
			return invalid(field, "must not contain spaces or control characters")
		}
	}
	local := func() error {
		if !allowLocal {
			return invalid(field, "local repositories are only allowed with the local runtime")
		}
		return nil
	}
	if strings.HasPrefix(raw, "/") {
		if !filepath.IsAbs(raw) {
			return invalid(field, "must be an absolute path")
		}
		return local()
	}
	if scpLikeURL.MatchString(raw) && !strings.Contains(raw, "://") {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return invalid(field, "is not a valid URL")
	}
	switch u.Scheme {
	case "https", "ssh":
		if u.Host == "" || strings.HasPrefix(u.Host, "-") {
			return invalid(field, "must name a host")
		}
		if u.Path == "" || u.Path == "/" {
			return invalid(field, "must name a repository path")
		}
		return nil
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return invalid(field, "file URL must not name a host")
		}
		if !strings.HasPrefix(u.Path, "/") {
			return invalid(field, "file URL must hold an absolute path")
		}
		return local()
	case "":
		return invalid(field, "must be an https://, ssh://, git@host:path or file:// URL, or an absolute path")
	default:
		return invalid(field, "scheme %q is not allowed; use https://, ssh://, git@host:path, file:// or an absolute path", u.Scheme)
	}
}

// IsLocalRepo reports whether a repository URL names a local path (file:// or absolute).
func IsLocalRepo(raw string) bool {
	return strings.HasPrefix(raw, "/") || strings.HasPrefix(raw, "file://")
}

// ValidateRef checks a starting ref: a name git accepts as a branch or tag
// (the rules of git check-ref-format) that cannot be read as an option.
func ValidateRef(field, ref string) error {
	if ref == "" {
		return invalid(field, "must not be empty")
	}
	if len(ref) > MaxRefChars {
		return invalid(field, "must be at most %d characters", MaxRefChars)
	}
	bad := func(why string) error { return invalid(field, "%q is not a valid branch or tag name: %s", ref, why) }
	if strings.HasPrefix(ref, "-") {
		return bad("it must not start with '-'")
	}
	if ref == "@" || ref == "HEAD" {
		return bad("it must name a branch or tag")
	}
	if strings.HasPrefix(ref, "/") || strings.HasSuffix(ref, "/") || strings.Contains(ref, "//") {
		return bad("slashes must separate non-empty components")
	}
	if strings.HasSuffix(ref, ".") || strings.Contains(ref, "..") || strings.Contains(ref, "@{") {
		return bad("it must not contain '..' or '@{' or end with '.'")
	}
	for _, r := range ref {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(" ~^:?*[\\", r) {
			return bad("it must not contain spaces, control characters or any of ~^:?*[\\")
		}
	}
	for _, part := range strings.Split(ref, "/") {
		if strings.HasPrefix(part, ".") || strings.HasSuffix(part, ".lock") {
			return bad("a component must not start with '.' or end with '.lock'")
		}
	}
	return nil
}

// ValidateWebhookURL checks the shape of a webhook URL: absolute https with a host
// and no user info. Addresses are checked by ServiceConfig.Webhooks when the URL
// is set and by the delivery's dialer at every connection (core/webhook).
func ValidateWebhookURL(raw string) error {
	const field = "webhookUrl"
	if len(raw) > MaxURLChars {
		return invalid(field, "must be at most %d characters", MaxURLChars)
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() {
		return invalid(field, "must be an absolute https:// URL")
	}
	if u.Scheme != "https" {
		return invalid(field, "must use https://")
	}
	if u.Host == "" || u.Hostname() == "" {
		return invalid(field, "must name a host")
	}
	if u.User != nil {
		return invalid(field, "must not contain user information")
	}
	return nil
}

// ValidateRuntime checks a runtime name against the runtimes this server has.
func ValidateRuntime(field, name string, available []string) error {
	for _, a := range available {
		if name == a {
			return nil
		}
	}
	return invalid(field, "unknown runtime %q; available: %s", name, strings.Join(available, ", "))
}
