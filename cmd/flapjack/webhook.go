package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/flapjack-dev/flapjack/core/webhook"
)

// announceWebhookPolicy warns at start when the testing exception is on: a
// server that may post to the inside of its network must say so where its
// operator looks.
func announceWebhookPolicy(g *globals, cfg settings) {
	if cfg.WebhookAllowPrivate {
		g.logger.Warn(webhook.AllowPrivateEnv + "=1: webhooks may go to loopback and private addresses, over http:// too. " +
			"This is for local testing only; never set it on a server others can reach.")
	}
}

// startDeliveries runs the webhook delivery loop next to a runner; it runs
// under the runner lock, so there is one per data directory. stop ends it and
// waits for attempts in flight (those are sent again, same id, later).
func startDeliveries(a *app, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	d := webhook.New(webhook.Config{Outbox: a.store, Box: a.box, Policy: webhook.NewPolicy(a.cfg.WebhookAllowPrivate, nil), Logger: log})
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

func newWebhookCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "webhook",
		Short:   "Manage how status webhooks are signed",
		Example: "  flapjack webhook secret",
		Args:    usageArgs(cobra.NoArgs),
	}
	var rotate bool
	secret := &cobra.Command{
		Use:   "secret",
		Short: "Print the webhook signing secret (whsec_...), creating it on first use",
		Long: `Every status webhook is signed the Standard Webhooks way with this
installation's secret: verify the webhook-signature header with it. The secret
is stored encrypted with the master key and created on first use.

--rotate makes a new secret and prints it. For 24 hours after, deliveries carry
both signatures (new and old) in the one webhook-signature header, so
receivers can switch over without missing one.`,
		Example: "  flapjack webhook secret\n  flapjack webhook secret --rotate",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runWebhookSecret(cmd.Context(), g, rotate)
		},
	}
	secret.Flags().BoolVar(&rotate, "rotate", false, "replace the secret; the old one keeps signing for 24 hours")
	cmd.AddCommand(secret)
	return cmd
}

func runWebhookSecret(ctx context.Context, g *globals, rotate bool) error {
	st, _, err := openAccounts(ctx, g)
	if err != nil {
		return err
	}
	defer st.Close()
	cfg, err := g.settings()
	if err != nil {
		return err
	}
	box, _, err := openBox(ctx, g.dataDir, cfg, st)
	if err != nil {
		return err
	}
	secrets := webhook.NewSecrets(st, box, nil)
	var s string
	if rotate {
		s, err = secrets.Rotate(ctx)
	} else {
		s, err = secrets.Current(ctx)
	}
	if err != nil {
		return fmt.Errorf("webhook secret: %w", err)
	}
	if rotate {
		fmt.Fprintln(g.stderr, "flapjack: rotated the webhook secret; for 24 hours deliveries carry the old signature too.")
	}
	_, err = fmt.Fprintln(g.stdout, s)
	return err
}
