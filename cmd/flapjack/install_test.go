package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestGoInstallNamesTheVersion: `go install` from a clone of the repository
// (as from the module proxy) gives a binary whose --version names the
// version Go stamped from the commit, and the commit itself.
func TestGoInstallNamesTheVersion(t *testing.T) {
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		// Go stamps the version from the repository's history; a source
		// tree without one (an unpacked archive) has nothing to stamp.
		t.Skipf("not in a git checkout, so there is no version to stamp: %v", err)
	}
	clone := filepath.Join(t.TempDir(), "flapjack")
	if out, err := exec.Command("git", "clone", "--quiet", strings.TrimSpace(string(top)), clone).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	head, err := exec.Command("git", "-C", clone, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	gobin := t.TempDir()
	install := exec.Command("go", "install", "./cmd/flapjack")
	install.Dir = clone
	install.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=-buildvcs=auto")
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("go install: %v\n%s", err, out)
	}
	out, err := exec.Command(filepath.Join(gobin, "flapjack"), "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("--version: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`^flapjack (v\d+\.\d+\.\d+\S*) \(commit ([0-9a-f]{40})\)$`).FindStringSubmatch(strings.TrimSpace(string(out)))
	if m == nil || m[2] != strings.TrimSpace(string(head)) || !strings.Contains(m[1], m[2][:12]) {
		t.Errorf("--version = %q; want the stamped version and commit %s", out, head)
	}
}
