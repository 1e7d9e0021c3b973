package local

import (
	"runtime"
	"strings"
)

// Every process flapjack starts (git and whatever git runs: hooks of a local
// push target, credential helpers, ssh; agent CLIs) gets an environment built
// from these lists, never the runner's minus a few names: the runner's
// environment holds FLAPJACK_MASTER_KEY, its own CURSOR_API_KEY and
// GITHUB_TOKEN, which no child may see.

// baseEnvNames is what any program needs to run and find its files, on every
// platform (Windows names are matched without regard to case there).
func baseEnvNames() []string {
	return []string{
		// Finding programs, the user and the terminal.
		"PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM",
		// Temporary files.
		"TMPDIR", "TMP", "TEMP",
		// Language and time zone.
		"LANG", "LANGUAGE", "TZ",
		// Per-user configuration, data and cache (agents keep logins there).
		"XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR",
		// Proxies and certificates of the network the user is on.
		"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy", "all_proxy",
		"SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS",
		// Windows.
		"SystemRoot", "SystemDrive", "windir", "ComSpec", "PATHEXT", "USERPROFILE", "USERNAME", "USERDOMAIN",
		"APPDATA", "LOCALAPPDATA", "ProgramData", "ProgramFiles", "ProgramFiles(x86)", "ProgramW6432",
		"CommonProgramFiles", "CommonProgramFiles(x86)", "CommonProgramW6432", "HOMEDRIVE", "HOMEPATH",
		"NUMBER_OF_PROCESSORS", "PROCESSOR_ARCHITECTURE", "OS",
	}
}

// basePrefixes are families of base variables (locale categories).
func basePrefixes() []string { return []string{"LC_"} }

// gitEnvNames is what git, ssh and credential helpers need besides the base:
// the user's ssh agent and askpass programs, and where git's own
// configuration is (tests and users point GIT_CONFIG_GLOBAL at their rules).
func gitEnvNames() []string {
	return []string{
		"SSH_AUTH_SOCK", "SSH_ASKPASS", "GIT_SSH", "GIT_SSH_COMMAND", "GIT_SSH_VARIANT", "GIT_ASKPASS",
		"GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM", "GIT_CONFIG_NOSYSTEM",
		"GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL",
		"GIT_SSL_CAINFO", "GIT_SSL_CAPATH",
	}
}

// neverEnv is never passed to a child, whatever a list or the user says:
// flapjack's own settings (the master key among them) and the runner's
// Cursor key (an agent that needs one gets the session's).
func neverEnv(k string) bool {
	return strings.HasPrefix(strings.ToUpper(k), "FLAPJACK_") || strings.EqualFold(k, "CURSOR_API_KEY")
}

// envPolicy is which of the parent's variables a child gets.
type envPolicy struct {
	names    []string
	prefixes []string
}

// gitPolicy is git's environment: base and git variables.
func gitPolicy() envPolicy {
	return envPolicy{names: append(baseEnvNames(), gitEnvNames()...), prefixes: basePrefixes()}
}

// agentPolicy is an agent's: base and git variables (agents run git and ssh
// too), the variable families its CLI documents, and the names the user
// lists in FLAPJACK_AGENT_ENV.
func agentPolicy(ad adapter, extra []string) envPolicy {
	p := gitPolicy()
	p.prefixes = append(p.prefixes, ad.envPrefixes...)
	p.names = append(p.names, extra...)
	return p
}

// filter returns the KEY=value pairs of environ the policy allows.
func (p envPolicy) filter(environ []string) []string {
	fold := runtime.GOOS == "windows"
	allowed := func(k string) bool {
		if neverEnv(k) {
			return false
		}
		for _, n := range p.names {
			if k == n || fold && strings.EqualFold(k, n) {
				return true
			}
		}
		for _, pre := range p.prefixes {
			if strings.HasPrefix(k, pre) || fold && strings.HasPrefix(strings.ToUpper(k), strings.ToUpper(pre)) {
				return true
			}
		}
		return false
	}
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		k, _, ok := strings.Cut(kv, "=")
		if ok && k != "" && allowed(k) {
			out = append(out, kv)
		}
	}
	return out
}

// ParseAgentEnv reads FLAPJACK_AGENT_ENV: variable names, separated by
// commas or blanks, that agents get besides their defaults.
func ParseAgentEnv(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
		if !neverEnv(f) {
			out = append(out, f)
		}
	}
	return out
}
