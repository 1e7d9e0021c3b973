package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/restshim"
	"github.com/flapjack-dev/flapjack/store"
)

// openAccounts opens the data directory's database for the account commands
// (tokens, users, orgs), which need neither the master key nor a runtime.
func openAccounts(ctx context.Context, g *globals) (*store.Store, core.Owner, error) {
	if err := os.MkdirAll(g.dataDir, 0o700); err != nil {
		return nil, core.Owner{}, fmt.Errorf("creating data directory: %w", err)
	}
	st, err := store.Open(filepath.Join(g.dataDir, "flapjack.db"))
	if err != nil {
		return nil, core.Owner{}, fmt.Errorf("opening database: %w", err)
	}
	owner, err := st.EnsureOwner(ctx)
	if err != nil {
		st.Close()
		return nil, core.Owner{}, fmt.Errorf("initialising database: %w", err)
	}
	return st, owner, nil
}

// withAccounts runs fn on the opened accounts store and closes it after: the
// shape of every org, user and token command.
func withAccounts(g *globals, fn func(ctx context.Context, st *store.Store, owner core.Owner, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		st, owner, err := openAccounts(cmd.Context(), g)
		if err != nil {
			return err
		}
		defer st.Close()
		return fn(cmd.Context(), st, owner, args)
	}
}

// findUser resolves a user id or name, with a message that says what to do.
func findUser(ctx context.Context, st *store.Store, idOrName string) (store.User, error) {
	u, err := st.FindUser(ctx, idOrName)
	if errors.Is(err, core.ErrNotFound) {
		return u, fmt.Errorf("no user %q (see flapjack user list)", idOrName)
	}
	return u, err
}

// findOrg resolves an org id or name.
func findOrg(ctx context.Context, st *store.Store, idOrName string) (store.Org, error) {
	o, err := st.FindOrg(ctx, idOrName)
	if errors.Is(err, core.ErrNotFound) {
		return o, fmt.Errorf("no org %q (see flapjack org list)", idOrName)
	}
	return o, err
}

// checkName accepts a display name for a token, user or org: 1 to 100
// characters, no control characters, and not shaped like an id, so that
// "id or name" arguments are never ambiguous.
func checkName(kind, name string) error {
	if strings.TrimSpace(name) == "" || len([]rune(name)) > 100 {
		return usageError{fmt.Errorf("%s name: 1 to 100 characters", kind)}
	}
	if err := core.ValidateText(kind+" name", name, false); err != nil {
		return usageError{err}
	}
	for _, p := range []string{core.PrefixOrg, core.PrefixUser, store.PrefixToken} {
		if strings.HasPrefix(name, p) {
			return usageError{fmt.Errorf("%s name: must not start with %q, which ids use", kind, p)}
		}
	}
	return nil
}

// mintToken creates a token for a user and returns it with its plaintext.
func mintToken(ctx context.Context, st *store.Store, userID, name string) (store.Token, string, error) {
	m := restshim.NewToken()
	tok, err := st.CreateToken(ctx, store.NewToken{UserID: userID, Name: name, Prefix: m.Prefix, Hash: m.Hash[:]})
	return tok, m.Token, err
}

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke API tokens for flapjack serve",
		Long: `API tokens authenticate REST requests (Authorization: Bearer fj_live_...). A token
acts as its user, in the orgs that user belongs to. Only a hash is stored: a
token is shown once, when it is created.`,
		Example: "  flapjack token create --name ci\n  flapjack token list\n  flapjack token revoke tok-abc123",
		Args:    usageArgs(cobra.NoArgs),
	}
	var name, user string
	create := &cobra.Command{
		Use:     "create",
		Short:   "Create a token and print it (once)",
		Example: "  flapjack token create --name ci\n  flapjack token create --name deploy --user alice",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkName("token", name); err != nil {
				return err
			}
			ctx := cmd.Context()
			st, owner, err := openAccounts(ctx, g)
			if err != nil {
				return err
			}
			defer st.Close()
			userID := owner.UserID
			if user != "" {
				u, err := findUser(ctx, st, user)
				if err != nil {
					return err
				}
				userID = u.ID
			}
			tok, plain, err := mintToken(ctx, st, userID, name)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "created token %s (%q) for user %s; it is shown only this once:\n", tok.ID, tok.Name, tok.UserName)
			_, err = fmt.Fprintln(g.stdout, plain)
			return err
		},
	}
	create.Flags().StringVar(&name, "name", envOr("FLAPJACK_TOKEN_NAME", "default"), "a name to recognise the token by (env FLAPJACK_TOKEN_NAME)")
	create.Flags().StringVar(&user, "user", envOr("FLAPJACK_TOKEN_USER", ""), "user id or name the token acts as; default the owner (env FLAPJACK_TOKEN_USER)")

	list := &cobra.Command{
		Use:     "list",
		Short:   "List tokens: id, name, user, prefix, created, last used",
		Example: "  flapjack token list",
		Args:    usageArgs(cobra.NoArgs),
		RunE: withAccounts(g, func(ctx context.Context, st *store.Store, _ core.Owner, _ []string) error {
			toks, err := st.ListTokens(ctx)
			if err != nil {
				return err
			}
			rows := make([][]string, 0, len(toks))
			for _, t := range toks {
				status := "active"
				if t.RevokedAt != nil {
					status = "revoked " + stamp(t.RevokedAt)
				}
				rows = append(rows, []string{t.ID, t.Name, t.UserName, t.Prefix + "…", stamp(&t.CreatedAt), stamp(t.LastUsedAt), status})
			}
			table(g.stdout, "ID\tNAME\tUSER\tPREFIX\tCREATED\tLAST USED\tSTATUS", rows)
			return nil
		}),
	}

	revoke := &cobra.Command{
		Use:     "revoke ID",
		Short:   "Revoke a token for good (it stops working at once, also on a running server)",
		Example: "  flapjack token revoke tok-abc123",
		Args:    usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, _, err := openAccounts(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer st.Close()
			err = st.RevokeToken(cmd.Context(), args[0])
			if errors.Is(err, core.ErrNotFound) {
				return fmt.Errorf("no token %q (see flapjack token list)", args[0])
			}
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(g.stdout, "revoked %s\n", args[0])
			return err
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

// stamp formats an optional time for lists.
func stamp(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}
