package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/core/cloud"
	"github.com/flapjack-dev/flapjack/core/local"
	"github.com/flapjack-dev/flapjack/store"
)

// app is an opened data directory: database, secrets box, runtimes and service.
type app struct {
	dataDir  string
	store    *store.Store
	box      *core.Box
	owner    core.Owner
	runtimes map[string]core.Runtime
	// defaultRuntime runs templates that name none (FLAPJACK_RUNTIME, default cloud).
	defaultRuntime string
	svc            *core.Service
	// redactor is the process's (globals.redactor), shared by service and runner.
	redactor *core.Redactor
}

// ownerActor is the local owner: member of every org. MCP and local CLI act as it.
func (a *app) ownerActor() core.Actor {
	return core.Actor{UserID: a.owner.UserID, AllOrgs: true, DefaultOrgID: a.owner.OrgID}
}

// openApp opens (creating on first use) the data directory.
func openApp(ctx context.Context, g *globals, kick func()) (*app, error) {
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
	a := &app{dataDir: g.dataDir, store: st}
	if err := a.init(ctx, g, kick); err != nil {
		st.Close()
		return nil, err
	}
	return a, nil
}

func (a *app) init(ctx context.Context, g *globals, kick func()) error {
	owner, err := a.store.EnsureOwner(ctx)
	if err != nil {
		return fmt.Errorf("initialising database: %w", err)
	}
	a.owner = owner
	haveCipher, err := a.store.HasCiphertext(ctx)
	if err != nil {
		return err
	}
	master, err := core.LoadMasterKey(a.dataDir, os.Getenv("FLAPJACK_MASTER_KEY"), haveCipher)
	if err != nil {
		return err
	}
	if a.box, err = core.NewBox(master); err != nil {
		return err
	}
	stored, err := a.store.MasterKeyCheck(ctx, a.box.CheckValue())
	if err != nil {
		return err
	}
	if err := a.box.Verify(stored); err != nil {
		source := filepath.Join(a.dataDir, core.MasterKeyFile)
		if os.Getenv("FLAPJACK_MASTER_KEY") != "" {
			source = "FLAPJACK_MASTER_KEY"
		}
		return fmt.Errorf("%w (%s): every secret it sealed would fail to open; start with the key the database was made with", err, source)
	}
	g.redactor.Add(base64.StdEncoding.EncodeToString(master))
	a.redactor = g.redactor
	// Earlier versions journaled the cloud calls in flight as files.
	if n, err := cloud.ImportJournalDir(ctx, filepath.Join(a.dataDir, "cloud"), a.store); err != nil {
		g.logger.Warn("moving the cloud call journal into the database", "err", err)
	} else if n > 0 {
		g.logger.Info("moved the cloud call journal into the database", "entries", n)
	}
	a.runtimes, err = buildRuntimes(g, a.dataDir, a.box, a.store)
	if err != nil {
		return err
	}
	a.defaultRuntime = envOr("FLAPJACK_RUNTIME", core.RuntimeCloud)
	if _, ok := a.runtimes[a.defaultRuntime]; !ok {
		return usageError{fmt.Errorf("FLAPJACK_RUNTIME=%q: unknown runtime; available: %s", a.defaultRuntime, strings.Join(keys(a.runtimes), ", "))}
	}
	a.svc = core.NewService(core.ServiceConfig{
		Store:            a.store,
		Box:              a.box,
		Runtimes:         a.runtimes,
		DefaultRuntime:   a.defaultRuntime,
		DefaultCursorKey: os.Getenv("CURSOR_API_KEY"),
		Kick:             kick,
		Logger:           g.logger,
		Redactor:         g.redactor,
		Webhooks:         loudWebhookPolicy(g),
	})
	return nil
}

func (a *app) Close() error { return a.store.Close() }

// buildRuntimes configures the runtimes from the environment. The cloud
// runtime needs the box (Cancel and Archive open a session's key outside the
// runner) and reads sessions during crash recovery.
func buildRuntimes(g *globals, dataDir string, box *core.Box, sessions *store.Store) (map[string]core.Runtime, error) {
	ls, err := readLocalSettings()
	if err != nil {
		return nil, usageError{err}
	}
	version, _ := buildVersion()
	lr, err := local.New(local.Config{
		WorkspaceRoot: filepath.Join(dataDir, "workspaces"),
		RepoRoot:      filepath.Join(dataDir, "repos"),
		Agent:         ls.agent,
		Bin:           ls.bin,
		Command:       ls.command,
		KillGrace:     ls.killGrace,
		GitHubToken:   ls.githubToken,
		GitHubAPIURL:  ls.githubAPI,
		Sessions:      sessions,
		Logger:        g.logger,
		// FLAPJACK_ACP_PERMISSIONS: workspace (default), allow-all or read-only.
		ACPPermissions: os.Getenv("FLAPJACK_ACP_PERMISSIONS"),
		AgentEnv:       ls.agentEnv,
		Version:        version,
	})
	if err != nil {
		return nil, usageError{err}
	}
	cr, err := cloud.New(cloud.Config{
		BaseURL:  envOr("FLAPJACK_CURSOR_API_URL", cloud.DefaultBaseURL),
		Box:      box,
		Journal:  sessions,
		Sessions: sessions,
		Version:  version,
		Logger:   g.logger,
	})
	if err != nil {
		return nil, usageError{fmt.Errorf("FLAPJACK_CURSOR_API_URL: %w", err)}
	}
	return map[string]core.Runtime{core.RuntimeLocal: lr, core.RuntimeCloud: cr}, nil
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
