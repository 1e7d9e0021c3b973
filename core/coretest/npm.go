package coretest

import (
	"os"
	"path/filepath"
	"testing"
)

// NPMBin returns the path of an executable from the pinned npm packages of
// testdata/npm (agent CLIs, ACP adapters, MCP clients), which `make npm-deps`
// installs into .cache/npm. FLAPJACK_NPM_BIN names the .bin directory (the
// Makefile sets it). Where the tools are missing the test is skipped, unless
// FLAPJACK_REQUIRE_NPM=1 (as in `make test` and CI), where it fails: the
// gate never passes without having run against the real programs.
func NPMBin(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("FLAPJACK_NPM_BIN")
	if dir == "" {
		dir = filepath.Join(moduleRoot(t), ".cache", "npm", "node_modules", ".bin")
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("FLAPJACK_REQUIRE_NPM") == "1" {
			t.Fatalf("%s is not installed in %s: run `make npm-deps`", name, dir)
		}
		t.Skipf("%s is not installed in %s; `make npm-deps` installs it (make test requires it)", name, dir)
	}
	return p
}

// NPMModules returns the node_modules directory of the pinned npm packages
// (for a Node.js stand-in that imports one of them), with NPMBin's rules.
func NPMModules(t testing.TB) string {
	t.Helper()
	return filepath.Dir(NPMBin(t, "."))
}

// moduleRoot is the directory of go.mod above the test's working directory.
func moduleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}
