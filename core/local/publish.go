package local

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/flapjack-dev/flapjack/core"
)

// publishTimeout bounds pushing and the pull request calls after a run; they
// run even when the run was cancelled or timed out, so work is never stranded.
const publishTimeout = 3 * time.Minute

// PR body limits: GitHub takes 65,536 characters.
const (
	prBodyResult = 3000
	prBodyPrompt = 4000
	prBodyFiles  = 50
)

// prPayload is the payload of a pr event.
type prPayload struct {
	URL    string `json:"url"`
	Number int    `json:"number"`
	Repo   string `json:"repo"`
	Branch string `json:"branch"`
	Base   string `json:"base"`
	// Action is "created" or "updated".
	Action string `json:"action"`
	// ReviewRequested names the user asked to review, when GitHub allowed it.
	ReviewRequested string `json:"review_requested,omitempty"`
}

// publish pushes the session branch to origin after a run and, with
// autoCreatePR on GitHub, opens the session's pull request or updates the one
// it has. It never fails the run: what cannot be done is an error event that
// says why, and the branch stays pushed.
func (r *Runtime) publish(ctx context.Context, spec core.RunSpec, ws string, rs *runState, em *emitter, out *core.RunOutcome) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
	defer cancel()
	if rs == nil {
		return
	}
	st := rs.get()
	branch, push := st.Branch, st.PushBranch
	if branch == "" { // a clone made by an earlier version
		if branch = r.currentBranch(ctx, ws); branch == "" {
			return
		}
		push = branch
	}
	head, err := r.head(ctx, ws)
	if err != nil || head == st.BaseCommit {
		return // nothing new to push or propose
	}
	if _, err := r.git(ctx, gitRun{dir: ws, args: []string{"remote", "get-url", "origin"}}); err != nil {
		return // no remote: the work stays in the workspace
	}
	// The user's own git credentials push; hooks stay off (see git).
	refspec := "refs/heads/" + branch + ":refs/heads/" + push
	if _, err := r.git(ctx, gitRun{dir: ws, args: []string{"push", "--quiet", "origin", "--", refspec}}); err != nil {
		msg := strings.ReplaceAll(err.Error(), spec.Session.RepoURL, displayURL(spec.Session.RepoURL))
		em.emit(core.EventError, errorPayload{Message: fmt.Sprintf("the branch %s was not pushed to %s: %s; the work is committed in the session's workspace", push, displayURL(spec.Session.RepoURL), msg)})
		return
	}
	r.log.InfoContext(ctx, "branch pushed", "session", spec.Session.ID, "branch", push)
	out.PRBranch = push
	s := spec.Session
	if !s.AutoCreatePR || s.WorkOnCurrentBranch || isLocalRepo(s.RepoURL) {
		// Work on the starting branch needs no pull request; a repository on
		// this machine cannot have one, and has the branch now.
		return
	}
	r.pullRequest(ctx, spec, rs, em, out, push)
}

// isLocalRepo reports whether a repository URL is a path on this machine.
func isLocalRepo(u string) bool {
	return strings.HasPrefix(u, "file://") || filepath.IsAbs(u)
}

// pullRequest opens or updates the session's pull request for the pushed
// branch, and asks the token's user to review a new one unless
// skipReviewerRequest.
func (r *Runtime) pullRequest(ctx context.Context, spec core.RunSpec, rs *runState, em *emitter, out *core.RunOutcome, push string) {
	fail := func(why string) {
		em.emit(core.EventError, errorPayload{Message: "no pull request was opened: " + why + "; the branch " + push + " is pushed"})
	}
	s := spec.Session
	repo, ok := r.github.repoOf(s.RepoURL)
	if !ok {
		fail(fmt.Sprintf("%s is not a repository on GitHub (API %s)", displayURL(s.RepoURL), r.github.api))
		return
	}
	if r.github.token == "" {
		fail("GITHUB_TOKEN is not set in the environment of the flapjack runner")
		return
	}
	st := rs.get()
	if st.BaseRef == "" || st.BaseIsTag {
		fail(fmt.Sprintf("the starting ref %q is not a branch a pull request could target", st.BaseRef))
		return
	}
	known := 0
	if st.PRRepo == repo.String() {
		known = st.PRNumber
	}
	em.mu.Lock()
	files := append([]fileChange(nil), em.committed...)
	em.mu.Unlock()
	body := em.redact(prBody(spec, *out, files))
	pr, created, err := r.github.upsertPR(ctx, repo, known, push, st.BaseRef, commitSubject(spec), body)
	if err != nil {
		fail(em.redact(err.Error()))
		return
	}
	if err := rs.update(func(st *sessionState) { st.PRRepo, st.PRNumber, st.PRURL = repo.String(), pr.Number, pr.HTMLURL }); err != nil {
		r.log.WarnContext(ctx, "recording the pull request failed", "session", s.ID, "err", err)
	}
	out.PRURL = pr.HTMLURL
	ev := prPayload{URL: pr.HTMLURL, Number: pr.Number, Repo: repo.String(), Branch: push, Base: st.BaseRef, Action: "updated"}
	if created {
		ev.Action = "created"
		if !s.SkipReviewerRequest {
			login, err := r.github.requestReview(ctx, repo, pr.Number)
			switch {
			case err != nil:
				em.emit(core.EventError, errorPayload{Message: "the pull request is open but no review was requested: " + em.redact(err.Error())})
			case login != "":
				ev.ReviewRequested = login
			default:
				r.log.InfoContext(ctx, "GitHub does not allow the token's user to review this pull request (its author)", "session", s.ID)
			}
		}
	}
	r.log.InfoContext(ctx, "pull request "+ev.Action, "session", s.ID, "url", pr.HTMLURL)
	em.emit(core.EventPR, ev)
}

// prBody describes the session and its latest run for the pull request.
func prBody(spec core.RunSpec, out core.RunOutcome, files []fileChange) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Opened by flapjack for session `%s`; each run of the session updates this description.\n\n", spec.Session.ID)
	fmt.Fprintf(&b, "### Latest run\n\nMessage `%s`: **%s**", spec.Message.ID, out.Status)
	if out.DurationMS > 0 {
		fmt.Fprintf(&b, " in %s", (time.Duration(out.DurationMS) * time.Millisecond).Round(100*time.Millisecond))
	}
	b.WriteString(".\n")
	if out.Error != "" {
		fmt.Fprintf(&b, "\nError:\n\n%s\n", quote(clip(out.Error, prBodyResult)))
	}
	if out.ResultText != "" {
		fmt.Fprintf(&b, "\nResult:\n\n%s\n", quote(clip(out.ResultText, prBodyResult)))
	}
	if len(files) > 0 {
		b.WriteString("\nFiles changed:\n\n")
		for i, f := range files {
			if i == prBodyFiles {
				fmt.Fprintf(&b, "- … and %d more\n", len(files)-i)
				break
			}
			fmt.Fprintf(&b, "- `%s` (%s)\n", strings.ReplaceAll(f.Path, "`", "'"), f.Status)
		}
	}
	fmt.Fprintf(&b, "\n<details><summary>Prompt</summary>\n\n%s\n\n</details>\n", quote(clip(spec.Message.Prompt, prBodyPrompt)))
	return b.String()
}

// clip cuts s to at most n runes, saying so.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + " …"
}

// quote makes s a Markdown block quote.
func quote(s string) string {
	return "> " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n> ")
}
