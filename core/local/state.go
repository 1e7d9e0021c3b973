package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// stateFileName is the session's state in its worktree's private git
// directory (<cache>/worktrees/<session-id>/flapjack.json): it goes with the
// worktree, so removing the workspace removes it, and no database column is
// needed for what only this runtime reads.
const stateFileName = "flapjack.json"

// sessionState is what the runtime remembers about a session between runs.
type sessionState struct {
	// Agent is the agent CLI that recorded CLISession.
	Agent string `json:"agent,omitempty"`
	// CLISession is the CLI's own conversation id, resumed by follow-ups.
	CLISession string `json:"cli_session_id,omitempty"`
	// BaseRef is the starting ref as resolved (the default branch when the
	// session named none): the pull request's base.
	BaseRef   string `json:"base_ref,omitempty"`
	BaseIsTag bool   `json:"base_is_tag,omitempty"`
	// BaseCommit is the commit the session branch started from.
	BaseCommit string `json:"base_commit,omitempty"`
	// Branch is the session's local branch; PushBranch the remote branch
	// it is pushed to (the starting branch with workOnCurrentBranch).
	Branch     string `json:"branch,omitempty"`
	PushBranch string `json:"push_branch,omitempty"`
	// The pull request opened for the session, updated by later runs.
	PRRepo   string `json:"pr_repo,omitempty"`
	PRNumber int    `json:"pr_number,omitempty"`
	PRURL    string `json:"pr_url,omitempty"`
}

// gitDir is the workspace's own git directory: .git itself in a clone, the
// directory its .git file points to in a worktree. "" when there is none.
func gitDir(ws string) string {
	dotgit := filepath.Join(ws, ".git")
	fi, err := os.Lstat(dotgit)
	if err != nil {
		return ""
	}
	if fi.IsDir() {
		return dotgit
	}
	b, err := os.ReadFile(dotgit)
	if err != nil {
		return ""
	}
	dir, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "gitdir: ")
	if !ok || dir == "" {
		return ""
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(ws, dir)
	}
	return dir
}

// runState reads and writes one session's state; the run's output reader
// and the run itself both update it.
type runState struct {
	mu   sync.Mutex
	path string // "" when the workspace has no git directory
	st   sessionState
}

// openState reads the state of the workspace; a missing file is a zero state.
func openState(ws string) (*runState, error) {
	rs := &runState{}
	dir := gitDir(ws)
	if dir == "" {
		return rs, nil
	}
	rs.path = filepath.Join(dir, stateFileName)
	b, err := os.ReadFile(rs.path)
	if errors.Is(err, fs.ErrNotExist) {
		return rs, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &rs.st); err != nil {
		return nil, fmt.Errorf("session state %s: %w", rs.path, err)
	}
	return rs, nil
}

// get returns a copy of the state.
func (rs *runState) get() sessionState {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.st
}

// update changes the state and writes it (to a temporary file renamed into
// place, so a crash never leaves half a file).
func (rs *runState) update(fn func(*sessionState)) error {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	fn(&rs.st)
	if rs.path == "" {
		return nil
	}
	return writeState(rs.path, rs.st)
}

func writeState(path string, st sessionState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
