package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/store"
)

func newUserCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "user",
		Short:   "Create and list users (who REST tokens act as)",
		Example: "  flapjack user create alice --org acme --token\n  flapjack user list",
		Args:    usageArgs(cobra.NoArgs),
	}
	var withToken bool
	var orgs []string
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a user and print its id (and, with --token, a token for it)",
		Long: `Creates a user. A user sees only the orgs it is a member of: give --org, or use
flapjack org add-member later. With --token, a token is minted for the user and
printed on a second line; it is shown only this once.`,
		Example: "  flapjack user create alice --org acme --token",
		Args:    usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkName("user", args[0]); err != nil {
				return err
			}
			ctx := cmd.Context()
			st, _, err := openAccounts(ctx, g)
			if err != nil {
				return err
			}
			defer st.Close()
			var orgIDs []string
			for _, o := range orgs {
				org, err := findOrg(ctx, st, o)
				if err != nil {
					return err
				}
				orgIDs = append(orgIDs, org.ID)
			}
			u, err := st.CreateUser(ctx, args[0])
			if errors.Is(err, store.ErrExists) {
				return fmt.Errorf("a user named %q exists already", args[0])
			}
			if err != nil {
				return err
			}
			for _, o := range orgIDs {
				if err := st.AddMember(ctx, o, u.ID); err != nil {
					return err
				}
			}
			if _, err := fmt.Fprintln(g.stdout, u.ID); err != nil {
				return err
			}
			if len(orgIDs) == 0 {
				fmt.Fprintf(g.stderr, "%s is in no org yet and sees nothing: flapjack org add-member ORG %s\n", u.Name, u.Name)
			}
			if !withToken {
				return nil
			}
			tok, plain, err := mintToken(ctx, st, u.ID, "default")
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "created token %s for %s; it is shown only this once\n", tok.ID, u.Name)
			_, err = fmt.Fprintln(g.stdout, plain)
			return err
		},
	}
	create.Flags().BoolVar(&withToken, "token", envOr("FLAPJACK_USER_TOKEN", "") == "true", "also mint a token for the user (env FLAPJACK_USER_TOKEN=true)")
	var defOrgs []string
	if v := envOr("FLAPJACK_USER_ORGS", ""); v != "" {
		defOrgs = strings.Split(v, ",")
	}
	create.Flags().StringSliceVar(&orgs, "org", defOrgs, "org id or name to join; repeatable (env FLAPJACK_USER_ORGS, comma-separated)")

	list := &cobra.Command{
		Use:     "list",
		Short:   "List users and their orgs",
		Example: "  flapjack user list",
		Args:    usageArgs(cobra.NoArgs),
		RunE: withAccounts(g, func(ctx context.Context, st *store.Store, _ core.Owner, _ []string) error {
			users, err := st.ListUsers(ctx)
			if err != nil {
				return err
			}
			rows := make([][]string, 0, len(users))
			for _, u := range users {
				rows = append(rows, []string{u.ID, u.Name, strings.Join(u.OrgIDs, ","), stamp(&u.CreatedAt)})
			}
			table(g.stdout, "ID\tNAME\tORGS\tCREATED", rows)
			return nil
		}),
	}
	cmd.AddCommand(create, list)
	return cmd
}
