package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/core/cloud"
	"github.com/flapjack-dev/flapjack/core/local"
	"github.com/flapjack-dev/flapjack/core/webhook"
	"github.com/flapjack-dev/flapjack/store"
)

// app is an opened data directory: database, secrets box, runtimes and service.
type app struct {
	dataDir  string
	cfg      settings
	store    *store.Store
	box      *core.Box
	owner    core.Owner
	runtimes map[string]core.Runtime
	svc      *core.Service
	// redactor is the process's (globals.redactor), shared by service and runner.
	redactor *core.Redactor
	logger   *slog.Logger
}

// ownerActor is the local owner: member of every org. MCP and local CLI act as it.
func (a *app) ownerActor() core.Actor {
	return core.Actor{UserID: a.owner.UserID, AllOrgs: true, DefaultOrgID: a.owner.OrgID}
}

// openApp opens (creating on first use) the data directory with the
// process's settings; kick is the Service's (nil: a runner needs none).
func openApp(ctx context.Context, g *globals, kick func()) (*app, error) {
	cfg, err := g.settings()
	if err != nil {
		return nil, err
	}
	announceWebhookPolicy(g, cfg)
	tightened, err := core.PrepareDataDir(g.dataDir)
	if err != nil {
		return nil, err
	}
	if tightened {
		g.logger.Warn("the data directory was readable by others; it is now private (mode 0700)", "dir", g.dataDir)
	}
	st, err := store.Open(filepath.Join(g.dataDir, "flapjack.db"))
	if err != nil {
		return nil, fmt.Errorf("opening database: %w", err)
	}
	a := &app{dataDir: g.dataDir, cfg: cfg, store: st, redactor: g.redactor, logger: g.logger}
	if err := a.init(ctx, kick); err != nil {
		st.Close()
		return nil, err
	}
	return a, nil
}

func (a *app) init(ctx context.Context, kick func()) error {
	owner, err := a.store.EnsureOwner(ctx)
	if err != nil {
		return fmt.Errorf("initialising database: %w", err)
	}
	a.owner = owner
	box, master, err := openBox(ctx, a.dataDir, a.cfg, a.store)
	if err != nil {
		return err
	}
	a.box = box
	a.redactor.Add(base64.StdEncoding.EncodeToString(master))
	stored, err := a.store.MasterKeyCheck(ctx, a.box.CheckValue())
	if err != nil {
		return err
	}
	if err := a.box.Verify(stored); err != nil {
		source := filepath.Join(a.dataDir, core.MasterKeyFile)
		if a.cfg.MasterKey != "" {
			source = "FLAPJACK_MASTER_KEY"
		}
		return fmt.Errorf("%w (%s): every secret it sealed would fail to open; start with the key the database was made with", err, source)
	}
	// Earlier versions journaled the cloud calls in flight as files.
	if n, err := cloud.ImportJournalDir(ctx, filepath.Join(a.dataDir, "cloud"), a.store); err != nil {
		a.logger.Warn("moving the cloud call journal into the database", "err", err)
	} else if n > 0 {
		a.logger.Info("moved the cloud call journal into the database", "entries", n)
	}
	if a.runtimes, err = buildRuntimes(a.cfg, a.dataDir, a.box, a.store, a.logger); err != nil {
		return err
	}
	if _, ok := a.runtimes[a.cfg.Runtime]; !ok {
		return usageError{fmt.Errorf("FLAPJACK_RUNTIME=%q: unknown runtime; available: %s", a.cfg.Runtime, strings.Join(keys(a.runtimes), ", "))}
	}
	a.svc = a.newService(a.store, kick, a.logger)
	return nil
}

// newService is the one place a Service is built: the MCP server and the
// CLI use a.svc, serve one that reads through its cache.
func (a *app) newService(st core.Store, kick func(), logger *slog.Logger) *core.Service {
	return core.NewService(core.ServiceConfig{
		Store:            st,
		Box:              a.box,
		Runtimes:         a.runtimes,
		DefaultRuntime:   a.cfg.Runtime,
		DefaultCursorKey: a.cfg.CursorKey,
		Kick:             kick,
		Logger:           logger,
		Redactor:         a.redactor,
		Webhooks:         webhook.NewPolicy(a.cfg.WebhookAllowPrivate, nil),
	})
}

// runRunner is the one place a runner and its webhook deliveries run: until
// ctx ends or, with idle > 0, the runner idles out. The caller holds the
// runner lock.
func (a *app) runRunner(ctx context.Context, logger *slog.Logger, idle time.Duration) error {
	r := core.NewRunner(core.RunnerConfig{
		Store:        a.store,
		Box:          a.box,
		Runtimes:     a.runtimes,
		Logger:       logger,
		IdleTimeout:  idle,
		Redactor:     a.redactor,
		Limits:       map[string]core.RunLimits{core.RuntimeLocal: a.cfg.Limits},
		WorkspaceTTL: a.cfg.WorkspaceTTL,
	})
	stopHooks := startDeliveries(a, logger)
	defer stopHooks()
	return r.Run(ctx)
}

// hasWork reports whether the data directory needs a runner.
func (a *app) hasWork(ctx context.Context) (bool, error) {
	return core.HasWork(ctx, a.store, a.cfg.WorkspaceTTL)
}

func (a *app) Close() error { return a.store.Close() }

// openBox loads the master key (FLAPJACK_MASTER_KEY or the key file, made on
// first use unless sealed secrets exist) into a Box, and returns the key
// too, for the redactor.
func openBox(ctx context.Context, dataDir string, cfg settings, st interface {
	HasCiphertext(context.Context) (bool, error)
}) (*core.Box, []byte, error) {
	haveCipher, err := st.HasCiphertext(ctx)
	if err != nil {
		return nil, nil, err
	}
	master, err := core.LoadMasterKey(dataDir, cfg.MasterKey, haveCipher)
	if err != nil {
		return nil, nil, err
	}
	box, err := core.NewBox(master)
	return box, master, err
}

// buildRuntimes configures the runtimes from the settings. The cloud
// runtime needs the box (Cancel and Archive open a session's key outside the
// runner) and reads sessions and its call journal from the store.
func buildRuntimes(cfg settings, dataDir string, box *core.Box, st *store.Store, logger *slog.Logger) (map[string]core.Runtime, error) {
	lr, err := newLocalRuntime(cfg, dataDir, st, logger)
	if err != nil {
		return nil, usageError{err}
	}
	version, _ := buildVersion()
	cr, err := cloud.New(cloud.Config{
		BaseURL:  cfg.CursorAPIURL,
		Box:      box,
		Journal:  st,
		Sessions: st,
		Version:  version,
		Logger:   logger,
	})
	if err != nil {
		return nil, usageError{fmt.Errorf("FLAPJACK_CURSOR_API_URL: %w", err)}
	}
	return map[string]core.Runtime{core.RuntimeLocal: lr, core.RuntimeCloud: cr}, nil
}

// newLocalRuntime configures the local runtime; sessions may be nil where
// nothing runs (flapjack doctor).
func newLocalRuntime(cfg settings, dataDir string, sessions local.SessionGetter, logger *slog.Logger) (*local.Runtime, error) {
	version, _ := buildVersion()
	return local.New(local.Config{
		WorkspaceRoot:  filepath.Join(dataDir, "workspaces"),
		RepoRoot:       filepath.Join(dataDir, "repos"),
		Agent:          cfg.LocalAgent,
		Bin:            cfg.LocalBin,
		Command:        cfg.LocalCommand,
		KillGrace:      cfg.KillGrace,
		GitHubToken:    cfg.GitHubToken,
		GitHubAPIURL:   cfg.GitHubAPIURL,
		Sessions:       sessions,
		Logger:         logger,
		ACPPermissions: cfg.ACPPermissions,
		AgentEnv:       cfg.AgentEnv,
		Version:        version,
	})
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
