//go:build unix

package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

var moreRE = regexp.MustCompile(`more: flapjack agents list --cursor (c1\.[A-Za-z0-9_-]+) \(or --all\)`)

// TestCLIListPages: list commands print one page (--limit, 50 by default)
// and say on stderr how to go on; --cursor goes on, --all prints every
// page; local and remote agree; contradicting flags are usage errors.
func TestCLIListPages(t *testing.T) {
	local, remote, _ := remoteCLI(t, "")
	for range 5 {
		local.jsonID("agents", "create", "--name", "a", "--repo-url", "https://github.com/acme/app")
	}
	ids := func(out string) []string {
		t.Helper()
		var list []struct{ ID string }
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		var s []string
		for _, a := range list {
			s = append(s, a.ID)
		}
		return s
	}
	for name, c := range map[string]*cli{"local": local, "remote": remote} {
		r := c.run("", "agents", "list", "--limit", "3", "-o", "json")
		m := moreRE.FindStringSubmatch(r.stderr)
		if r.code != 0 || len(ids(r.stdout)) != 3 || m == nil {
			t.Fatalf("%s: agents list --limit 3: exit %d, stdout %s, stderr %q; want 3 and a way on", name, r.code, r.stdout, r.stderr)
		}
		r2 := c.run("", "agents", "list", "--limit", "3", "--cursor", m[1], "-o", "json")
		if r2.code != 0 || len(ids(r2.stdout)) != 2 || r2.stderr != "" {
			t.Fatalf("%s: the second page: exit %d, stdout %s, stderr %q; want the last 2 and nothing more", name, r2.code, r2.stdout, r2.stderr)
		}
		all := c.run("", "agents", "list", "--all", "-o", "json")
		if got, want := ids(all.stdout), append(ids(r.stdout), ids(r2.stdout)...); strings.Join(got, ",") != strings.Join(want, ",") || all.stderr != "" {
			t.Fatalf("%s: --all = %v (stderr %q), want the two pages %v", name, got, all.stderr, want)
		}
		for _, args := range [][]string{{"--all", "--limit", "2"}, {"--limit", "0"}} {
			if r := c.run("", append([]string{"sessions", "list"}, args...)...); r.code != 2 {
				t.Errorf("%s: sessions list %v: exit %d, want 2 (usage)", name, args, r.code)
			}
		}
	}
	if l, r := local.ok("agents", "list", "--all"), remote.ok("agents", "list", "--all"); l != r {
		t.Errorf("--all differs between local and remote:\n%s\n%s", l, r)
	}
}
