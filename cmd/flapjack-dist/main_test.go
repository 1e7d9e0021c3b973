package main

import (
	"archive/tar"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestDistIsReproducible: two runs on the same tree give byte-identical
// archives (the same SHA256SUMS), named by version, OS and architecture; the
// archived binary reports the stamped version.
func TestDistIsReproducible(t *testing.T) {
	t.Chdir("../..")
	targets := []string{runtime.GOOS + "/" + runtime.GOARCH, "windows/amd64"}
	a, b := t.TempDir(), t.TempDir()
	mtime := time.Unix(1700000000, 0).UTC()
	for _, dir := range []string{a, b} {
		if err := run("v9.9.9", "abc123", dir, targets, mtime); err != nil {
			t.Fatal(err)
		}
	}
	sa, err := os.ReadFile(filepath.Join(a, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	sb, _ := os.ReadFile(filepath.Join(b, "SHA256SUMS"))
	if string(sa) != string(sb) {
		t.Errorf("two runs differ:\n%s\n%s", sa, sb)
	}
	native := "flapjack_v9.9.9_" + runtime.GOOS + "_" + runtime.GOARCH + ".tar.gz"
	for _, name := range []string{native, "flapjack_v9.9.9_windows_amd64.zip"} {
		if !strings.Contains(string(sa), "  "+name+"\n") {
			t.Errorf("SHA256SUMS lacks %s:\n%s", name, sa)
		}
	}

	// The native archive's binary runs and names its version.
	f, err := os.Open(filepath.Join(a, native))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	bin := filepath.Join(t.TempDir(), "flapjack")
	found := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == strings.TrimSuffix(native, ".tar.gz")+"/flapjack" {
			found = true
			if h.Mode != 0o755 || !h.ModTime.Equal(mtime) {
				t.Errorf("binary entry mode %o, time %v", h.Mode, h.ModTime)
			}
			data, _ := io.ReadAll(tr)
			if err := os.WriteFile(bin, data, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !found {
		t.Fatal("no binary in the archive")
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "flapjack v9.9.9 (commit abc123)" {
		t.Errorf("--version = %q, %v", out, err)
	}
}
