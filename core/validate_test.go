package core

import (
	"strings"
	"testing"
)

func TestValidateRepoURL(t *testing.T) {
	tests := []struct {
		url        string
		allowLocal bool
		ok         bool
	}{
		{"https://github.com/acme/app", false, true},
		{"https://github.com/acme/app.git", false, true},
		{"ssh://git@github.com/acme/app.git", false, true},
		{"git@github.com:acme/app.git", false, true},
		{"file:///srv/repos/app", true, true},
		{"file:///srv/repos/app", false, false},
		{"/srv/repos/app", true, true},
		{"/srv/repos/app", false, false},
		{"relative/path", true, false},
		{"http://github.com/acme/app", false, false},
		{"ext::sh -c touch% /tmp/pwned", true, false},
		{"--upload-pack=touch /tmp/x", true, false},
		{"-oProxyCommand=x", true, false},
		{"https://", false, false},
		{"https://github.com", false, false},
		{"https://github.com/acme/app with space", false, false},
		{"git@github.com:-oProxyCommand", false, false},
		{"ftp://example.com/repo", false, false},
		{"", false, false},
		{"file://host/path", true, false},
	}
	for _, tt := range tests {
		err := ValidateRepoURL("repoUrl", tt.url, tt.allowLocal)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateRepoURL(%q, local=%v) = %v, want ok=%v", tt.url, tt.allowLocal, err, tt.ok)
		}
		if err != nil && ErrorCode(err) != CodeValidation {
			t.Errorf("ValidateRepoURL(%q) code = %s", tt.url, ErrorCode(err))
		}
		if err != nil && !strings.Contains(err.Error(), "repoUrl") {
			t.Errorf("ValidateRepoURL(%q) error %q does not name the field", tt.url, err)
		}
	}
}

func TestValidateRef(t *testing.T) {
	good := []string{"main", "feature/login-fix", "v1.2.3", "release-2026.05", "a"}
	bad := []string{"", "-x", "--upload-pack=x", "a..b", "a b", "a~1", "a^", "a:b", "a?", "a*", "a[", "a\\b",
		"/a", "a/", "a//b", "a.", ".a", "a/.b", "a.lock", "@", "HEAD", "a@{1}", "a\x01", strings.Repeat("a", 256)}
	for _, r := range good {
		if err := ValidateRef("startingRef", r); err != nil {
			t.Errorf("ValidateRef(%q) = %v, want ok", r, err)
		}
	}
	for _, r := range bad {
		err := ValidateRef("startingRef", r)
		if ErrorCode(err) != CodeValidation {
			t.Errorf("ValidateRef(%q) = %v, want VALIDATION_ERROR", r, err)
		}
	}
}

func TestValidateWebhookURL(t *testing.T) {
	tests := []struct {
		url string
		ok  bool
	}{
		{"https://hooks.example.com/flapjack", true},
		{"https://hooks.example.com:8443/x?y=1", true},
		{"http://hooks.example.com/x", false},
		{"https://user:pw@hooks.example.com/x", false},
		{"hooks.example.com/x", false},
		{"https:///x", false},
		{"", false},
		{"ftp://x.example.com", false},
	}
	for _, tt := range tests {
		err := ValidateWebhookURL(tt.url)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateWebhookURL(%q) = %v, want ok=%v", tt.url, err, tt.ok)
		}
	}
}

func TestValidatePrompt(t *testing.T) {
	tests := []struct {
		prompt string
		ok     bool
	}{
		{"fix it", true},
		{"", false},
		{"   \n", false},
		{strings.Repeat("é", MaxPromptChars), true},
		{strings.Repeat("a", MaxPromptChars+1), false},
		{"bad \xff utf8", false},
	}
	for _, tt := range tests {
		err := ValidatePrompt(tt.prompt)
		if (err == nil) != tt.ok {
			t.Errorf("ValidatePrompt(len %d) = %v, want ok=%v", len(tt.prompt), err, tt.ok)
		}
		if err != nil {
			if e := AsError(err); e.Code != CodeValidation || e.Field != "prompt" {
				t.Errorf("ValidatePrompt error = %+v, want VALIDATION_ERROR on prompt", e)
			}
		}
	}
}

func TestValidateText(t *testing.T) {
	for _, tc := range []struct {
		v         string
		multiline bool
		ok        bool
	}{
		{"Bug Fixer", false, true},
		{"naïve ünïcödé 名前", false, true},
		{"two\nlines", false, false},
		{"two\nlines\tand tabs", true, true},
		{"esc \x1b[2J", true, false},
		{"bell \x07", false, false},
		{"c1 \u009b", true, false},
		{"del \x7f", false, false},
		{"rtl \u202egnp.exe", true, false},
		{"isolate \u2067", false, false},
		{"sep \u2028", false, false},
		{"sep \u2028", true, true},
	} {
		err := ValidateText("name", tc.v, tc.multiline)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateText(%q, multiline %v) = %v, want ok %v", tc.v, tc.multiline, err, tc.ok)
		}
		if err != nil && ErrorCode(err) != CodeValidation {
			t.Errorf("code %s", ErrorCode(err))
		}
	}
}
