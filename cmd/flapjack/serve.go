package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"

	"github.com/flapjack-dev/flapjack/core"
	flapjackmcp "github.com/flapjack-dev/flapjack/mcp"
	"github.com/flapjack-dev/flapjack/restshim"
	"github.com/flapjack-dev/flapjack/store"
)

// serveConfig is the flags of flapjack serve; each has a FLAPJACK_* twin.
type serveConfig struct {
	addr              string
	tlsCert, tlsKey   string
	readHeaderTimeout time.Duration
	readTimeout       time.Duration
	writeTimeout      time.Duration
	idleTimeout       time.Duration
	shutdownTimeout   time.Duration
	heartbeat         time.Duration
}

func newServeCmd(g *globals) *cobra.Command {
	var c serveConfig
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the REST API over HTTP (and run sessions in this process)",
		Long: `Serves the Code Agents REST API (OpenAPI document at /openapi.json) on the same
database as the MCP server. Every route but /healthz and /openapi.json needs
Authorization: Bearer fj_live_... (flapjack token create). The first serve of a
data directory without any token creates one and prints it once to stderr.

serve runs the session runner in this process; if a detached runner holds the
data directory, serve answers at once and takes the runner over when it exits.
SIGTERM or Ctrl-C stops gracefully: requests in flight finish, event streams
close, then the runner hands its sessions over.`,
		Example: "  flapjack serve\n  flapjack serve --addr 0.0.0.0:8443 --tls-cert cert.pem --tls-key key.pem",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd.Context(), g, c)
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.addr, "addr", envOr("FLAPJACK_ADDR", "127.0.0.1:8787"), "listen address (env FLAPJACK_ADDR)")
	f.StringVar(&c.tlsCert, "tls-cert", envOr("FLAPJACK_TLS_CERT", ""), "TLS certificate file (PEM); with --tls-key serves HTTPS (env FLAPJACK_TLS_CERT)")
	f.StringVar(&c.tlsKey, "tls-key", envOr("FLAPJACK_TLS_KEY", ""), "TLS private key file (PEM) (env FLAPJACK_TLS_KEY)")
	durations := []struct {
		p          *time.Duration
		name, env  string
		def, usage string
	}{
		{&c.readHeaderTimeout, "read-header-timeout", "FLAPJACK_READ_HEADER_TIMEOUT", "10s", "time to read request headers"},
		{&c.readTimeout, "read-timeout", "FLAPJACK_READ_TIMEOUT", "30s", "time to read a whole request"},
		{&c.writeTimeout, "write-timeout", "FLAPJACK_WRITE_TIMEOUT", "60s", "time to write a response (long polls extend it, event streams lift it)"},
		{&c.idleTimeout, "http-idle-timeout", "FLAPJACK_HTTP_IDLE_TIMEOUT", "120s", "how long an idle keep-alive connection stays open"},
		{&c.shutdownTimeout, "shutdown-timeout", "FLAPJACK_SHUTDOWN_TIMEOUT", "30s", "how long requests in flight may take to finish on shutdown"},
		{&c.heartbeat, "sse-heartbeat", "FLAPJACK_SSE_HEARTBEAT", "15s", "interval of comment lines on quiet event streams"},
	}
	var envErrs []error
	for _, d := range durations {
		def, err := time.ParseDuration(envOr(d.env, d.def))
		if err != nil || def <= 0 {
			// A malformed setting is an error, never a silent default.
			if err == nil {
				err = errors.New("must be positive")
			}
			envErrs = append(envErrs, fmt.Errorf("%s=%q: %w", d.env, os.Getenv(d.env), err))
			def, _ = time.ParseDuration(d.def)
		}
		f.DurationVar(d.p, d.name, def, fmt.Sprintf("%s (env %s)", d.usage, d.env))
	}
	if run := cmd.RunE; run != nil && len(envErrs) > 0 {
		cmd.RunE = func(c *cobra.Command, args []string) error { return usageError{errors.Join(envErrs...)} }
	}
	return cmd
}

// runServe serves until ctx ends (SIGTERM, Ctrl-C), then shuts down in order:
// HTTP first (in-flight requests finish, streams close), the runner last.
func runServe(ctx context.Context, g *globals, c serveConfig) error {
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return usageError{errors.New("--tls-cert and --tls-key go together")}
	}
	for _, d := range []time.Duration{c.readHeaderTimeout, c.readTimeout, c.writeTimeout, c.idleTimeout, c.shutdownTimeout, c.heartbeat} {
		if d <= 0 {
			return usageError{errors.New("timeouts and intervals must be positive")}
		}
	}
	logger := slog.New(restshim.LogHandler(g.logger.Handler()))
	restshim.TuneRuntime()
	holder := &runnerHolder{log: logger}
	// No kick: the runner this process holds or waits for polls the database.
	a, err := openApp(ctx, g, nil)
	if err != nil {
		return err
	}
	defer a.Close()
	dbPath := filepath.Join(a.dataDir, "flapjack.db")
	cache, err := store.NewReadCache(a.store, dbPath)
	if err != nil {
		return err
	}
	defer cache.Close()
	// The REST Service reads through the cache; everything else about it is
	// what openApp configured for the MCP server.
	svc := a.newService(cache, nil, logger)

	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", c.addr, err)
	}
	scheme := "http"
	if c.tlsCert != "" {
		scheme = "https"
	}
	base := scheme + "://" + ln.Addr().String()
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() && scheme == "http" {
		logger.Warn("listening on a non-loopback address without TLS: tokens and Cursor keys cross the network in clear text; use --tls-cert/--tls-key or a TLS proxy", "addr", ln.Addr().String())
	}
	if err := ensureFirstToken(ctx, g, a, base); err != nil {
		ln.Close()
		return err
	}

	version, _ := buildVersion()
	newMCP := func(actor core.Actor) *sdk.Server {
		return flapjackmcp.NewServer(svc, actor, flapjackmcp.Options{Version: version, Logger: logger})
	}
	// Access-log lines go out in batches; every other line at once.
	accessOut := restshim.NewLogBuffer(g.stderr, 100*time.Millisecond)
	defer accessOut.Close()
	accessLog := slog.New(restshim.LogHandler(core.RedactHandler(slog.NewTextHandler(accessOut, &slog.HandlerOptions{Level: g.level}), a.redactor)))
	api := restshim.New(svc, restshim.NewTokenAuthenticator(cache, logger), restshim.Options{Logger: logger, AccessLog: accessLog,
		Heartbeat: c.heartbeat, Redactor: a.redactor, MCP: newMCP})
	srv := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: c.readHeaderTimeout,
		ReadTimeout:       c.readTimeout,
		WriteTimeout:      c.writeTimeout,
		IdleTimeout:       c.idleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(api.CloseStreams)

	runCtx, stopRunner := context.WithCancel(context.Background())
	runnerDone := make(chan struct{})
	go func() {
		defer close(runnerDone)
		holder.run(runCtx, a)
	}()

	errc := make(chan error, 1)
	go func() {
		if c.tlsCert != "" {
			errc <- srv.ServeTLS(ln, c.tlsCert, c.tlsKey)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	logger.Info("serving the REST API", "url", base, "openapi", base+"/openapi.json", "pid", os.Getpid())

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	logger.Info("shutting down: finishing requests in flight")
	sctx, cancel := context.WithTimeout(context.Background(), c.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Warn("requests still running at the shutdown deadline were cut", "err", err)
		srv.Close()
	}
	stopRunner()
	<-runnerDone
	handOver(g, a, logger)
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}

// handOver starts a detached runner when sessions still need one after this
// server's runner stopped (messages queued behind a run it had to end), and
// returns once it holds the lock, so whoever stopped this server finds the
// sessions' runner in place (and can stop it in turn).
func handOver(g *globals, a *app, log *slog.Logger) {
	work, err := a.hasWork(context.Background())
	if err != nil || !work {
		return
	}
	log.Info("handing the remaining sessions to a detached runner")
	start, err := startDetachedRunner(g)
	if err != nil {
		log.Error("could not start a runner", "err", err)
		return
	}
	switch ok, known := start.wait(handOverWait); {
	case !known:
		log.Warn("the detached runner did not take over in time", "waited", handOverWait)
	case !ok:
		log.Warn("the detached runner exited without taking over; the next flapjack process starts another")
	}
}

// handOverWait bounds how long a stopping server waits for its successor.
const handOverWait = 5 * time.Second

// runnerHolder runs the runner in this process once it holds the runner
// lock: at once, or, while a detached runner holds it, the moment that one
// lets go (the kernel hands the lock over; nothing polls). While a detached
// runner holds it, that runner sees this server's sessions in the database.
type runnerHolder struct {
	log *slog.Logger
}

func (h *runnerHolder) run(ctx context.Context, a *app) {
	if b, alive := runnerAlive(a.dataDir); alive {
		h.log.Info("another runner holds this data directory; serving now, taking the runner over when it exits", "runner_pid", b.PID)
	}
	lock, err := waitLockRunner(ctx, a.dataDir)
	if err != nil {
		if ctx.Err() == nil {
			h.log.Error("runner lock", "err", err)
		}
		return
	}
	h.log.Info("runner started in this process", "pid", os.Getpid())
	a.runRunner(ctx, h.log, 0)
	lock.unlock()
}

// ensureFirstToken creates a token for the owner when the data directory has
// none at all, and prints it once to stderr with how to use it. It is the
// only place a token is ever printed by the server.
func ensureFirstToken(ctx context.Context, g *globals, a *app, base string) error {
	m := restshim.NewToken()
	tok, created, err := a.store.CreateFirstToken(ctx, store.NewToken{UserID: a.owner.UserID, Name: "first", Prefix: m.Prefix, Hash: m.Hash[:]})
	if err != nil {
		return fmt.Errorf("creating the first API token: %w", err)
	}
	if !created {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nflapjack: created the first API token (%s, for user %q). It is shown only this once; store it now:\n\n", tok.ID, tok.UserName)
	fmt.Fprintf(&b, "    %s\n\n", m.Token)
	fmt.Fprintf(&b, "Send it as a bearer token, for example:\n\n")
	fmt.Fprintf(&b, "    curl -H \"Authorization: Bearer %s\" %s/api/code-agents\n\n", m.Token, base)
	fmt.Fprintf(&b, "More tokens: flapjack token create --name NAME; list or revoke them with flapjack token list|revoke.\n\n")
	_, err = fmt.Fprint(g.stderr, b.String())
	return err
}
