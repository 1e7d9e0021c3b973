//go:build unix

package local

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flapjack-dev/flapjack/core"
)

func TestRepoOf(t *testing.T) {
	t.Parallel()
	def, err := newGitHubClient("", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	ghe, err := newGitHubClient("https://ghe.example.com/api/v3", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		c    *githubClient
		url  string
		want string // "" = not on this GitHub
	}{
		{def, "https://github.com/acme/widgets", "acme/widgets"},
		{def, "https://github.com/acme/widgets.git", "acme/widgets"},
		{def, "https://github.com/acme/widgets/", "acme/widgets"},
		{def, "https://x-access-token:secret@github.com/acme/widgets.git", "acme/widgets"},
		{def, "git@github.com:acme/widgets.git", "acme/widgets"},
		{def, "git@github.com:acme/widgets", "acme/widgets"},
		{def, "ssh://git@github.com/acme/widgets.git", "acme/widgets"},
		{def, "ssh://git@github.com:22/acme/widgets.git", "acme/widgets"},
		{def, "https://GitHub.com/Acme/Widgets.git", "Acme/Widgets"},
		{def, "https://github.com/acme/widgets/tree/main", ""},
		{def, "https://github.com/acme", ""},
		{def, "https://gitlab.com/acme/widgets.git", ""},
		{def, "https://github.com.evil.example/acme/widgets.git", ""},
		{def, "/home/me/widgets", ""},
		{def, "file:///home/me/widgets", ""},
		{def, "https://github.com/-acme/widgets", ""},
		{def, "https://ghe.example.com/acme/widgets.git", ""},
		{ghe, "https://ghe.example.com/acme/widgets.git", "acme/widgets"},
		{ghe, "git@ghe.example.com:acme/widgets.git", "acme/widgets"},
		{ghe, "https://github.com/acme/widgets.git", ""},
	}
	for _, tt := range tests {
		got, ok := tt.c.repoOf(tt.url)
		if ok != (tt.want != "") || (ok && got.String() != tt.want) {
			t.Errorf("repoOf(%q) via %s = %v, %v; want %q", tt.url, tt.c.api, got, ok, tt.want)
		}
	}
}

func TestGitHubAPIURL(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"", "https://api.github.com", "https://ghe.example.com/api/v3/", "http://127.0.0.1:8080", "http://localhost:9", "http://[::1]:80"} {
		if _, err := newGitHubClient(ok, "", nil); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"http://api.github.com", "ftp://x", "api.github.com", "https://user:pw@api.github.com", "http://10.0.0.1"} {
		if _, err := newGitHubClient(bad, "", nil); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// publishRuntime is an exec runtime with the test agent and a GitHub API.
func publishRuntime(t *testing.T, gh *fakeGitHub, token string) *Runtime {
	t.Helper()
	cfg := Config{WorkspaceRoot: filepath.Join(t.TempDir(), "workspaces"), Agent: AgentExec, Command: []string{testAgent(t)},
		KillGrace: 300 * time.Millisecond, Clock: fixedClock{}, GitHubToken: token}
	if gh != nil {
		cfg.GitHubAPIURL = gh.srv.URL
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// runOnce prepares spec and executes it.
func runOnce(t *testing.T, r *Runtime, spec core.RunSpec) (core.RunOutcome, *fakeSink) {
	t.Helper()
	if err := r.prepare(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	sink := newSink(t)
	out, err := r.Execute(context.Background(), spec, sink)
	if err != nil {
		t.Fatal(err)
	}
	return out, sink
}

func errorMessages(t *testing.T, sink *fakeSink) []string {
	var out []string
	for _, p := range sink.payloads(t, core.EventError) {
		out = append(out, p["message"].(string))
	}
	return out
}

// TestPullRequestNotPossible: without a token, off GitHub, or when GitHub
// fails, the run still finishes, the branch is pushed and an error event
// says exactly why.
func TestPullRequestNotPossible(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		root    string
		host    string
		token   bool
		fail    int
		wantErr string
	}{
		{name: "no token", root: fakeGitHubRoot, host: "github.com",
			wantErr: "no pull request was opened: GITHUB_TOKEN is not set in the environment of the flapjack runner; the branch flapjack/"},
		{name: "not GitHub", root: fakeOtherRoot, host: "gitlab.example.com", token: true,
			wantErr: "no pull request was opened: https://gitlab.example.com/acme/"},
		{name: "GitHub fails", root: fakeGitHubRoot, host: "github.com", token: true, fail: http.StatusBadGateway,
			wantErr: "no pull request was opened: GitHub answered 502 to GET /repos/acme/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			gh := newFakeGitHub(t)
			gh.fail = tt.fail
			token := ""
			if tt.token {
				token = gh.token
			}
			repo := newHostedRepo(t, tt.root, tt.host, "acme")
			r := publishRuntime(t, gh, token)
			spec := newSpec(repo.url, "main", "do it")
			spec.Session.AutoCreatePR = true
			out, sink := runOnce(t, r, spec)
			branch := "flapjack/" + spec.Session.ID
			if out.Status != core.MessageFinished || out.PRBranch != branch || out.PRURL != "" {
				t.Errorf("outcome = %+v", out)
			}
			errs := errorMessages(t, sink)
			if len(errs) != 1 || !strings.HasPrefix(errs[0], tt.wantErr) || !strings.HasSuffix(errs[0], "; the branch "+branch+" is pushed") {
				t.Errorf("error events = %q, want one starting %q", errs, tt.wantErr)
			}
			if repo.branch(t, branch) == "" {
				t.Error("the branch was not pushed")
			}
			if len(gh.pulls()) != 0 || len(sink.payloads(t, core.EventPR)) != 0 {
				t.Error("a pull request was opened")
			}
			for _, e := range sink.all() {
				if strings.Contains(string(e.Payload), gh.token) {
					t.Errorf("the token is in a %s event", e.Type)
				}
			}
		})
	}
}

// TestPublishWhatAndWhere: nothing to push means no push and no pull
// request; workOnCurrentBranch pushes to the starting branch and opens none;
// autoCreatePR false pushes only; a push the remote rejects is an error event
// and the run still finishes.
func TestPublishWhatAndWhere(t *testing.T) {
	t.Parallel()
	gh := newFakeGitHub(t)
	t.Run("nothing new", func(t *testing.T) {
		t.Parallel()
		repo := newHostedRepo(t, fakeGitHubRoot, "github.com", "acme")
		spec := newSpec(repo.url, "main", "nochange")
		spec.Session.AutoCreatePR = true
		out, sink := runOnce(t, publishRuntime(t, gh, gh.token), spec)
		if out.PRBranch != "" || repo.branch(t, "flapjack/"+spec.Session.ID) != "" || len(sink.all()) != 2 || sink.all()[0].Type != core.EventAgent {
			t.Errorf("outcome %+v, events %v", out, sink.all())
		}
	})
	t.Run("work on the current branch", func(t *testing.T) {
		t.Parallel()
		repo := newHostedRepo(t, fakeGitHubRoot, "github.com", "acme")
		spec := newSpec(repo.url, "main", "append")
		spec.Session.AutoCreatePR, spec.Session.WorkOnCurrentBranch = true, true
		r := publishRuntime(t, gh, gh.token)
		out, sink := runOnce(t, r, spec)
		ws := filepath.Join(r.root, spec.Session.ID)
		if out.PRBranch != "main" || out.PRURL != "" || repo.branch(t, "main") != git(t, ws, "rev-parse", "HEAD") {
			t.Errorf("outcome %+v; origin main %s", out, repo.branch(t, "main"))
		}
		if edits := sink.payloads(t, core.EventFileEdit); len(edits) != 1 || edits[0]["branch"] != "main" {
			t.Errorf("file_edit: %v", edits)
		}
		if repo.branch(t, "flapjack/"+spec.Session.ID) != "" || len(errorMessages(t, sink)) != 0 {
			t.Error("pushed the session branch too, or complained")
		}
		// Someone pushes to main meanwhile: the next push is rejected, and
		// the run says so without failing.
		other := t.TempDir()
		git(t, other, "clone", "-q", repo.bare, ".")
		writeFile(t, filepath.Join(other, "theirs.txt"), "x")
		git(t, other, "add", "-A")
		git(t, other, "commit", "-q", "-m", "theirs")
		git(t, other, "push", "-q", "origin", "main")
		sink2 := newSink(t)
		out2, err := r.Execute(context.Background(), followUp(spec, "append more"), sink2)
		errs := errorMessages(t, sink2)
		if err != nil || out2.Status != core.MessageFinished || out2.PRBranch != "" || len(errs) != 1 || !strings.HasPrefix(errs[0], "the branch main was not pushed to "+repo.url+": git push failed:") || !strings.Contains(errs[0], "[rejected]") {
			t.Errorf("rejected push: %+v, %v, %q", out2, err, errs)
		}
	})
	t.Run("no pull request wanted", func(t *testing.T) {
		t.Parallel()
		repo := newHostedRepo(t, fakeGitHubRoot, "github.com", "acme")
		spec := newSpec(repo.url, "main", "append")
		out, sink := runOnce(t, publishRuntime(t, gh, gh.token), spec)
		if out.PRBranch != "flapjack/"+spec.Session.ID || out.PRURL != "" || len(sink.payloads(t, core.EventPR)) != 0 {
			t.Errorf("outcome %+v", out)
		}
	})
}

// TestPullRequestFoundByBranch: with the number forgotten (a runner that died
// before recording it), the open pull request of the branch is found and
// updated, not duplicated; a bot-opened pull request gets the token's user
// as reviewer, and skipReviewerRequest asks nobody.
func TestPullRequestFoundByBranch(t *testing.T) {
	t.Parallel()
	gh := newFakeGitHub(t)
	gh.author = "flapjack-bot"
	repo := newHostedRepo(t, fakeGitHubRoot, "github.com", "acme")
	r := publishRuntime(t, gh, gh.token)
	spec := newSpec(repo.url, "main", "append")
	spec.Session.AutoCreatePR = true
	out, sink := runOnce(t, r, spec)
	ev := sink.payloads(t, core.EventPR)
	if out.PRURL == "" || len(ev) != 1 || ev[0]["review_requested"] != "octocat" {
		t.Fatalf("outcome %+v, pr events %v", out, ev)
	}
	if prs := gh.pulls(); len(prs) != 1 || !cmp.Equal(prs[0].Reviewers, []string{"octocat"}) {
		t.Errorf("pull requests: %+v", prs)
	}
	ws := filepath.Join(r.root, spec.Session.ID)
	rs, err := openState(ws)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.update(func(st *sessionState) { st.PRNumber, st.PRRepo = 0, "" }); err != nil {
		t.Fatal(err)
	}
	out2, sink2 := runOnce(t, r, followUp(spec, "append again"))
	if out2.PRURL != out.PRURL || len(gh.pulls()) != 1 || gh.count("PATCH ") != 1 {
		t.Errorf("follow-up: %+v; %d pull requests, %d updates", out2, len(gh.pulls()), gh.count("PATCH "))
	}
	if ev := sink2.payloads(t, core.EventPR); len(ev) != 1 || ev[0]["action"] != "updated" {
		t.Errorf("follow-up pr events: %v", ev)
	}

	spec3 := newSpec(repo.url, "main", "append")
	spec3.Session.AutoCreatePR, spec3.Session.SkipReviewerRequest = true, true
	users := gh.count("GET /user")
	if out3, _ := runOnce(t, r, spec3); out3.PRURL == "" || gh.count("GET /user") != users {
		t.Errorf("skipReviewerRequest: %+v, asked GitHub who the token is", out3)
	}
}
