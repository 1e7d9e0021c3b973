//go:build unix

package local

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeGitHub speaks the pull request calls of GitHub's REST API as documented:
// POST/GET /repos/{owner}/{repo}/pulls, PATCH /repos/{owner}/{repo}/pulls/{n},
// GET /user, POST /repos/{owner}/{repo}/pulls/{n}/requested_reviewers. A
// head branch must exist in the bare repository under fakeGitHubRoot, so a
// pull request can only follow a push. GitHub refuses to make a pull
// request's author its reviewer, and so does the fake.
type fakeGitHub struct {
	srv   *httptest.Server
	token string
	login string
	// author opens the pull requests (a GitHub App's bot); "" means login.
	author string

	mu    sync.Mutex
	prs   []*fakePR
	calls []string
	// fail, when set, answers every call with this status.
	fail int
}

type fakePR struct {
	Number                 int
	Repo                   string
	Head, Base, Title      string
	Body, State, Author    string
	Reviewers              []string
	HTMLURL                string
	CreatedBody, LastPatch string
}

func newFakeGitHub(t *testing.T) *fakeGitHub {
	t.Helper()
	f := &fakeGitHub{token: "ghp_testtoken0123456789", login: "octocat"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /user", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, map[string]any{"login": f.login, "id": 1})
	})
	mux.HandleFunc("GET /repos/{owner}/{repo}/pulls", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		repo := r.PathValue("owner") + "/" + r.PathValue("repo")
		owner, branch, _ := strings.Cut(r.URL.Query().Get("head"), ":")
		list := []map[string]any{}
		for _, pr := range f.prs {
			if pr.Repo == repo && owner == r.PathValue("owner") && pr.Head == branch && (r.URL.Query().Get("state") != "open" || pr.State == "open") {
				list = append(list, pr.json())
			}
		}
		reply(w, http.StatusOK, list)
	})
	mux.HandleFunc("POST /repos/{owner}/{repo}/pulls", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Title, Head, Base, Body string }
		if json.NewDecoder(r.Body).Decode(&in) != nil || in.Title == "" || in.Head == "" || in.Base == "" {
			reply(w, http.StatusUnprocessableEntity, map[string]any{"message": "Validation Failed"})
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		repo := r.PathValue("owner") + "/" + r.PathValue("repo")
		bare := filepath.Join(fakeGitHubRoot, r.PathValue("owner"), r.PathValue("repo")+".git")
		for _, ref := range []string{in.Head, in.Base} {
			if out, _ := gitOut(bare, "rev-parse", "--verify", "--quiet", "refs/heads/"+ref); out == "" {
				reply(w, http.StatusUnprocessableEntity, map[string]any{"message": "Validation Failed",
					"errors": []map[string]any{{"resource": "PullRequest", "field": "head", "code": "invalid"}}})
				return
			}
		}
		for _, pr := range f.prs {
			if pr.Repo == repo && pr.Head == in.Head && pr.State == "open" {
				reply(w, http.StatusUnprocessableEntity, map[string]any{"message": "Validation Failed",
					"errors": []map[string]any{{"message": "A pull request already exists for " + r.PathValue("owner") + ":" + in.Head + "."}}})
				return
			}
		}
		author := f.author
		if author == "" {
			author = f.login
		}
		pr := &fakePR{Number: len(f.prs) + 1, Repo: repo, Head: in.Head, Base: in.Base, Title: in.Title, Body: in.Body, CreatedBody: in.Body, State: "open", Author: author}
		pr.HTMLURL = fmt.Sprintf("https://github.com/%s/pull/%d", repo, pr.Number)
		f.prs = append(f.prs, pr)
		reply(w, http.StatusCreated, pr.json())
	})
	mux.HandleFunc("PATCH /repos/{owner}/{repo}/pulls/{n}", func(w http.ResponseWriter, r *http.Request) {
		var in map[string]string
		if json.NewDecoder(r.Body).Decode(&in) != nil {
			reply(w, http.StatusBadRequest, map[string]any{"message": "Problems parsing JSON"})
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		pr := f.find(r)
		if pr == nil {
			reply(w, http.StatusNotFound, map[string]any{"message": "Not Found"})
			return
		}
		if b, ok := in["body"]; ok {
			pr.Body, pr.LastPatch = b, b
		}
		if ti, ok := in["title"]; ok {
			pr.Title = ti
		}
		reply(w, http.StatusOK, pr.json())
	})
	mux.HandleFunc("POST /repos/{owner}/{repo}/pulls/{n}/requested_reviewers", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Reviewers []string }
		_ = json.NewDecoder(r.Body).Decode(&in)
		f.mu.Lock()
		defer f.mu.Unlock()
		pr := f.find(r)
		if pr == nil {
			reply(w, http.StatusNotFound, map[string]any{"message": "Not Found"})
			return
		}
		for _, u := range in.Reviewers {
			if u == pr.Author {
				reply(w, http.StatusUnprocessableEntity, map[string]any{"message": "Review cannot be requested from pull request author."})
				return
			}
		}
		pr.Reviewers = append(pr.Reviewers, in.Reviewers...)
		reply(w, http.StatusCreated, pr.json())
	})
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.calls = append(f.calls, r.Method+" "+r.URL.RequestURI())
		fail := f.fail
		f.mu.Unlock()
		switch {
		case r.Header.Get("Authorization") != "Bearer "+f.token:
			reply(w, http.StatusUnauthorized, map[string]any{"message": "Bad credentials"})
		case r.Header.Get("Accept") != "application/vnd.github+json" || r.Header.Get("X-GitHub-Api-Version") == "":
			reply(w, http.StatusBadRequest, map[string]any{"message": "missing API headers"})
		case fail != 0:
			reply(w, fail, map[string]any{"message": "Server Error"})
		default:
			mux.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// find is the pull request a request's path names; f.mu is held.
func (f *fakeGitHub) find(r *http.Request) *fakePR {
	n, _ := strconv.Atoi(r.PathValue("n"))
	repo := r.PathValue("owner") + "/" + r.PathValue("repo")
	for _, pr := range f.prs {
		if pr.Number == n && pr.Repo == repo {
			return pr
		}
	}
	return nil
}

func (pr *fakePR) json() map[string]any {
	return map[string]any{"number": pr.Number, "html_url": pr.HTMLURL, "state": pr.State, "title": pr.Title, "body": pr.Body,
		"head": map[string]any{"ref": pr.Head}, "base": map[string]any{"ref": pr.Base}, "user": map[string]any{"login": pr.Author}}
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// pulls returns copies of every pull request opened.
func (f *fakeGitHub) pulls() []fakePR {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []fakePR
	for _, pr := range f.prs {
		out = append(out, *pr)
	}
	return out
}

// count counts the calls whose "METHOD path" starts with prefix.
func (f *fakeGitHub) count(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}
