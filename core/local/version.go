package local

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/flapjack-dev/flapjack/core"
)

// versionTimeout bounds an agent CLI's --version.
const versionTimeout = 10 * time.Second

// AgentInfo is an agent CLI as this runtime finds it.
type AgentInfo struct {
	Name    string `json:"name"`
	Path    string `json:"path,omitempty"`
	Version string `json:"version,omitempty"`
	// Missing says why it cannot run (not installed, not configured).
	Missing string `json:"missing,omitempty"`
}

// agentInfoPayload is the first event of a run: which agent CLI runs it.
type agentInfoPayload struct {
	Line    string `json:"line"`
	Agent   string `json:"agent"`
	Path    string `json:"path"`
	Version string `json:"version,omitempty"`
}

// cliVersion returns the first line of `exe --version`, once per executable
// and modification time for the life of the runtime; "" when it has none.
func (r *Runtime) cliVersion(ctx context.Context, exe string) string {
	key := exe
	if fi, err := os.Stat(exe); err == nil {
		key += "@" + fi.ModTime().String()
	}
	r.versionsMu.Lock()
	v, ok := r.versions[key]
	r.versionsMu.Unlock()
	if ok {
		return v
	}
	ctx, cancel := context.WithTimeout(ctx, versionTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "--version")
	cmd.Env = gitPolicy().filter(os.Environ())
	cmd.WaitDelay = time.Second
	out, err := cmd.Output()
	if err == nil {
		v = truncateRunes(strings.TrimSpace(strings.SplitN(strings.ToValidUTF8(string(out), "\uFFFD"), "\n", 2)[0]), 200)
	}
	r.versionsMu.Lock()
	r.versions[key] = v
	r.versionsMu.Unlock()
	return v
}

// asksVersion says whether an agent answers --version: the CLIs do; an exec
// command may do anything, and an ACP agent serves the protocol instead (it
// names its version in initialize, which the run logs).
func asksVersion(ad adapter) bool { return ad.name != AgentExec && !ad.acp }

// agentEvent logs which agent CLI a run uses, as its first event.
func (r *Runtime) agentEvent(ctx context.Context, em *emitter, agent resolvedAgent) {
	p := agentInfoPayload{Agent: agent.name, Path: agent.argv[0]}
	if asksVersion(agent.adapter) {
		p.Version = r.cliVersion(ctx, agent.argv[0])
	}
	p.Line = "flapjack: running " + agent.name
	if p.Version != "" {
		p.Line += " " + p.Version
	}
	p.Line += " (" + p.Path + ")"
	em.emit(core.EventAgent, p)
}

// Agents lists every agent this runtime knows, whether it is installed, and
// its version (`flapjack runner status`).
func (r *Runtime) Agents(ctx context.Context) []AgentInfo {
	var out []AgentInfo
	for _, name := range AvailableAgents() {
		info := AgentInfo{Name: name}
		ra, err := r.resolveAgent(name)
		if err != nil {
			info.Missing = err.Error()
		} else {
			info.Path = ra.argv[0]
			if asksVersion(ra.adapter) {
				info.Version = r.cliVersion(ctx, ra.argv[0])
			}
		}
		out = append(out, info)
	}
	return out
}
