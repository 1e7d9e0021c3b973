package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultGitHubAPIURL is GitHub's REST API; GitHub Enterprise Server has its
// own (https://HOST/api/v3).
const DefaultGitHubAPIURL = "https://api.github.com"

// githubTimeout bounds one GitHub API call.
const githubTimeout = 30 * time.Second

// maxGitHubResponse bounds what is read of an API answer.
const maxGitHubResponse = 1 << 20

// githubClient opens and updates pull requests through GitHub's REST API.
type githubClient struct {
	api   string // base URL without the final slash
	token string
	http  *http.Client
	// hosts are the git hosts this API serves.
	hosts []string
}

// newGitHubClient checks the API URL: https, or plain http on a loopback
// address (a test double), because the token travels in every request.
func newGitHubClient(apiURL, token string, hc *http.Client) (*githubClient, error) {
	if apiURL == "" {
		apiURL = DefaultGitHubAPIURL
	}
	u, err := url.Parse(apiURL)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("FLAPJACK_GITHUB_API_URL=%q: want an https:// URL such as %s", apiURL, DefaultGitHubAPIURL)
	}
	loopback := isLoopback(u.Hostname())
	if u.Scheme == "http" && !loopback {
		return nil, fmt.Errorf("FLAPJACK_GITHUB_API_URL=%q: plain http is allowed on a loopback address only; the token must not travel in clear", apiURL)
	}
	if hc == nil {
		hc = &http.Client{Timeout: githubTimeout}
	}
	host := strings.ToLower(u.Hostname())
	hosts := []string{host, strings.TrimPrefix(host, "api.")}
	if host == "api.github.com" || loopback {
		hosts = append(hosts, "github.com") // a local test double stands in for github.com
	}
	return &githubClient{api: strings.TrimRight(u.String(), "/"), token: token, http: hc, hosts: hosts}, nil
}

// isLoopback reports whether host is localhost or a loopback IP.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ghRepo is a repository on GitHub.
type ghRepo struct{ owner, name string }

func (g ghRepo) String() string { return g.owner + "/" + g.name }

// repoOf finds owner and repository in a repository URL as the user gave it
// (https://github.com/o/r(.git), git@github.com:o/r.git,
// ssh://git@github.com/o/r.git), so git's own configuration (insteadOf,
// credential helpers) still decides how git reaches it. ok is false when the
// URL is not one of this GitHub's.
func (c *githubClient) repoOf(raw string) (ghRepo, bool) {
	var host, path string
	switch {
	case strings.Contains(raw, "://"):
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http" && u.Scheme != "ssh" && u.Scheme != "git") {
			return ghRepo{}, false
		}
		host, path = u.Hostname(), u.Path
	default:
		at, rest, ok := strings.Cut(raw, "@")
		h, p, ok2 := strings.Cut(rest, ":")
		if !ok || !ok2 || at == "" || strings.Contains(h, "/") {
			return ghRepo{}, false
		}
		host, path = h, p
	}
	known := false
	for _, h := range c.hosts {
		if strings.EqualFold(host, h) {
			known = true
		}
	}
	if !known {
		return ghRepo{}, false
	}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) != 2 {
		return ghRepo{}, false
	}
	repo := ghRepo{owner: parts[0], name: strings.TrimSuffix(parts[1], ".git")}
	if !plainToken(repo.owner, 100, "._-") || !plainToken(repo.name, 100, "._-") {
		return ghRepo{}, false
	}
	return repo, true
}

// apiError is an answer of GitHub other than success, with its message.
type apiError struct {
	method, path string
	status       int
	message      string
}

func (e *apiError) Error() string {
	msg := fmt.Sprintf("GitHub answered %d to %s %s", e.status, e.method, e.path)
	if e.message != "" {
		msg += ": " + e.message
	}
	return msg
}

// statusOf returns the HTTP status of an API error, 0 for other errors.
func statusOf(err error) int {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status
	}
	return 0
}

// do makes one API call with the token as a bearer token, decoding a 2xx
// answer into out, and any other into an apiError with GitHub's message.
func (c *githubClient) do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	ctx, cancel := context.WithTimeout(ctx, githubTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	target := c.api + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	req.Header.Set("User-Agent", "flapjack")
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// The error names the URL, never the header with the token.
		return fmt.Errorf("calling GitHub: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxGitHubResponse))
	if err != nil {
		return fmt.Errorf("reading GitHub's answer to %s %s: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e struct {
			Message string `json:"message"`
			Errors  []struct {
				Message string `json:"message"`
			} `json:"errors"`
		}
		_ = json.Unmarshal(data, &e)
		msg := e.Message
		for _, d := range e.Errors {
			if d.Message != "" {
				msg += " (" + d.Message + ")"
			}
		}
		return &apiError{method: method, path: path, status: resp.StatusCode, message: truncateRunes(strings.ToValidUTF8(msg, "\uFFFD"), 500)}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("GitHub's answer to %s %s: %w", method, path, err)
		}
	}
	return nil
}

// pullRequest is what flapjack reads of a GitHub pull request.
type pullRequest struct {
	Number  int    `json:"number"`
	HTMLURL string `json:"html_url"`
	State   string `json:"state"`
}

func (c *githubClient) pullsPath(repo ghRepo) string {
	return "/repos/" + url.PathEscape(repo.owner) + "/" + url.PathEscape(repo.name) + "/pulls"
}

// upsertPR updates the session's pull request (by the number remembered, or
// found by its head branch) or opens one; created says which.
func (c *githubClient) upsertPR(ctx context.Context, repo ghRepo, known int, head, base, title, body string) (pr pullRequest, created bool, err error) {
	update := func(n int) (pullRequest, error) {
		var pr pullRequest
		err := c.do(ctx, http.MethodPatch, fmt.Sprintf("%s/%d", c.pullsPath(repo), n), nil, map[string]string{"body": body}, &pr)
		return pr, err
	}
	if known > 0 {
		pr, err := update(known)
		if statusOf(err) != http.StatusNotFound {
			return pr, false, err
		}
	}
	find := func() (int, error) {
		var list []pullRequest
		q := url.Values{"head": {repo.owner + ":" + head}, "state": {"open"}}
		if err := c.do(ctx, http.MethodGet, c.pullsPath(repo), q, nil, &list); err != nil {
			return 0, err
		}
		if len(list) == 0 {
			return 0, nil
		}
		return list[0].Number, nil
	}
	n, err := find()
	if err != nil {
		return pullRequest{}, false, err
	}
	if n > 0 {
		pr, err := update(n)
		return pr, false, err
	}
	err = c.do(ctx, http.MethodPost, c.pullsPath(repo), nil, map[string]any{"title": title, "head": head, "base": base, "body": body}, &pr)
	if statusOf(err) == http.StatusUnprocessableEntity {
		// Opened meanwhile (by a run of an earlier runner that died)?
		if n, ferr := find(); ferr == nil && n > 0 {
			pr, err := update(n)
			return pr, false, err
		}
	}
	return pr, err == nil, err
}

// requestReview asks the token's user to review the pull request and returns
// their login. GitHub refuses (422) when that user is the pull request's
// author, the usual case with a personal token: the login is then "",
// without error, since that is not possible rather than wrong.
func (c *githubClient) requestReview(ctx context.Context, repo ghRepo, number int) (string, error) {
	var me struct {
		Login string `json:"login"`
	}
	if err := c.do(ctx, http.MethodGet, "/user", nil, nil, &me); err != nil {
		return "", err
	}
	if me.Login == "" {
		return "", errors.New("GitHub did not say whose token this is")
	}
	err := c.do(ctx, http.MethodPost, fmt.Sprintf("%s/%d/requested_reviewers", c.pullsPath(repo), number), nil, map[string][]string{"reviewers": {me.Login}}, nil)
	switch {
	case statusOf(err) == http.StatusUnprocessableEntity:
		return "", nil
	case err != nil:
		return "", err
	}
	return me.Login, nil
}
