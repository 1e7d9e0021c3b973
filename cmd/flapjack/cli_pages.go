package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/flapjack-dev/flapjack/core"
)

// pageFlags are a list command's --limit, --cursor and --all: one page of
// at most --limit items (as the MCP tools answer), or every page.
type pageFlags struct {
	limit  int
	cursor string
	all    bool
}

func (f *pageFlags) add(c *cobra.Command) {
	c.Flags().IntVar(&f.limit, "limit", core.DefaultPageLimit, fmt.Sprintf("at most this many, newest first (1 to %d)", core.MaxPageLimit))
	c.Flags().StringVar(&f.cursor, "cursor", "", "start after the page that printed this cursor")
	c.Flags().BoolVar(&f.all, "all", false, "every page, not only the first")
}

// check refuses flags that contradict each other before anything is read.
func (f *pageFlags) check(c *cobra.Command) error {
	if f.limit < 1 {
		return usageError{fmt.Errorf("--limit %d: must be at least 1", f.limit)}
	}
	if f.all && c.Flags().Changed("limit") {
		return usageError{fmt.Errorf("--all and --limit: choose one")}
	}
	return nil
}

// collect reads one page, or with --all every page (MaxPageLimit at a
// time), and tells stderr how to go on when more remain.
func collect[T any](ctx context.Context, f *pageFlags, c *cobra.Command, fetch func(limit *int, cursor string) ([]T, string, error)) ([]T, error) {
	limit, cursor := f.limit, f.cursor
	if f.all {
		limit = core.MaxPageLimit
	}
	var out []T
	for {
		page, next, err := fetch(&limit, cursor)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if next == "" {
			return out, nil
		}
		if !f.all {
			printMore(c.ErrOrStderr(), c.CommandPath(), next)
			return out, nil
		}
		cursor = next
	}
}

// printMore says where the next page starts, on stderr so stdout stays the
// list a script parses.
func printMore(w io.Writer, command, next string) {
	fmt.Fprintf(w, "more: %s --cursor %s (or --all)\n", command, next)
}
