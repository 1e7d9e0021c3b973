package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/flapjack-dev/flapjack/core"
	"github.com/flapjack-dev/flapjack/store"
)

func newOrgCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "org",
		Short: "Create and list orgs, and add users to them",
		Long: `Code agents and sessions belong to an org. A REST token sees the orgs its user is
a member of, and nothing else: objects of other orgs answer 404. The MCP server
and the CLI act as the local owner, member of every org.`,
		Example: "  flapjack org create acme\n  flapjack org add-member acme alice\n  flapjack org list",
		Args:    usageArgs(cobra.NoArgs),
	}
	create := &cobra.Command{
		Use:     "create NAME",
		Short:   "Create an org and print its id",
		Example: "  flapjack org create acme",
		Args:    usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkName("org", args[0]); err != nil {
				return err
			}
			st, _, err := openAccounts(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer st.Close()
			o, err := st.CreateOrg(cmd.Context(), args[0])
			if errors.Is(err, store.ErrExists) {
				return fmt.Errorf("an org named %q exists already", args[0])
			}
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(g.stdout, o.ID)
			return err
		},
	}
	list := &cobra.Command{
		Use:     "list",
		Short:   "List orgs with their member counts",
		Example: "  flapjack org list",
		Args:    usageArgs(cobra.NoArgs),
		RunE: withAccounts(g, func(ctx context.Context, st *store.Store, _ core.Owner, _ []string) error {
			orgs, err := st.ListOrgs(ctx)
			if err != nil {
				return err
			}
			rows := make([][]string, 0, len(orgs))
			for _, o := range orgs {
				rows = append(rows, []string{o.ID, o.Name, strconv.Itoa(o.Members), stamp(&o.CreatedAt)})
			}
			table(g.stdout, "ID\tNAME\tMEMBERS\tCREATED", rows)
			return nil
		}),
	}
	addMember := &cobra.Command{
		Use:     "add-member ORG USER",
		Short:   "Make a user a member of an org (ids or names)",
		Example: "  flapjack org add-member acme alice",
		Args:    usageArgs(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			st, _, err := openAccounts(ctx, g)
			if err != nil {
				return err
			}
			defer st.Close()
			o, err := findOrg(ctx, st, args[0])
			if err != nil {
				return err
			}
			u, err := findUser(ctx, st, args[1])
			if err != nil {
				return err
			}
			if err := st.AddMember(ctx, o.ID, u.ID); err != nil {
				return err
			}
			_, err = fmt.Fprintf(g.stdout, "%s (%s) is a member of %s (%s)\n", u.Name, u.ID, o.Name, o.ID)
			return err
		},
	}
	cmd.AddCommand(create, list, addMember)
	return cmd
}
